"""Regions of a map: placement on the image, polygons, hot regions, statistics, GeoJSON."""
