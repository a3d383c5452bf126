"""The annotations dock: shapes over heatmaps, statistics, labels, GeoJSON, sessions."""
