"""Tiles of the bundled H&E slide and the demo model, shared by the trust-panel tests."""

from __future__ import annotations

import functools

import numpy as np

TILES = {
    "glass": (1632, 240),
    "dense": (1200, 1200),
    "dense_edge": (768, 1584),
    "dense_edge_2": (1056, 1632),
    "stroma": (912, 1152),
    "dense_saturated": (1041, 1302),
}
"""Top-left (row, column) of 96 px tiles: bare glass, nuclei-dense tissue filling the tile,
nuclei-dense tissue beside glass, stroma, and nuclei-dense tissue the demo calls with a
saturated softmax (p(nuclei-dense) stays above 0.95 even when the whole tile is blurred)."""


@functools.cache
def demo_model():
    """The bundled demo classifier (loaded once per test session)."""
    import napari_gradcam as ng

    return ng.load_model("demo")


def he_tile(name: str, size: int = 96) -> np.ndarray:
    """A ``size`` x ``size`` RGB uint8 tile of the bundled slide (a writable copy)."""
    from napari_gradcam.data import read_he_region

    row, column = TILES[name]
    return np.array(read_he_region()[row : row + size, column : column + size])
