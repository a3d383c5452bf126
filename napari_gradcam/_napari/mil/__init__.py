"""The "Slide-level model (MIL)" dock: a slide prediction explained tile by tile, then by pixel."""
