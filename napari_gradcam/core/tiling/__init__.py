"""Regions larger than the model input: tile grids, stitching, tissue masks, pyramid levels."""
