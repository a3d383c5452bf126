"""A small slide cut from the CC0 H&E slide, and the MIL dock over it."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_gradcam.data import HE_MPP, read_he_region

TIMEOUT_MS = 120_000
TISSUE = (768, 1088)
"""Top-left of a 480 px square of the CC0 slide that is all tissue: 5 x 5 tiles of 96 px."""
SIDE = 480


def he_square() -> np.ndarray:
    """The all-tissue 480 px square (level 0 of the test slide)."""
    y, x = TISSUE
    return np.ascontiguousarray(read_he_region()[y : y + SIDE, x : x + SIDE])


def write_he_slide(path: Path, mpp: float = HE_MPP) -> Path:
    """A tiled two-level TIFF of the square, ``mpp`` in its resolution tags."""
    level0 = he_square()
    per_cm = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(level0, tile=(128, 128), photometric="rgb", **per_cm)
        tiff.write(level0[::2, ::2], tile=(128, 128), photometric="rgb", subfiletype=1, **per_cm)
    return path


@pytest.fixture(scope="session")
def he_slide(tmp_path_factory) -> Path:
    """The square as a slide file at the CC0 slide's microns per pixel."""
    return write_he_slide(tmp_path_factory.mktemp("mil_slide") / "he_square.tif")


@pytest.fixture
def make_mil_dock(make_napari_viewer, tmp_path):
    """Factory: a viewer with a layer (the reader's slide by default) and the docked dock."""
    from napari_gradcam._napari.mil.widget import NAME, SlideMilWidget

    def make(data=None, **layer_kwargs) -> tuple:
        viewer = make_napari_viewer()
        layer = viewer.add_image(data, **layer_kwargs)
        dock = SlideMilWidget(viewer, cache_dir=str(tmp_path / "embeddings"))
        viewer.window.add_dock_widget(dock, name=NAME)
        dock.image.value = layer
        return viewer, dock, layer

    return make


@pytest.fixture
def reader_layer(he_slide):
    """The test slide as the plugin's reader opens it: (levels, layer kwargs)."""
    from napari_gradcam._napari.reader import read_slide

    data, kwargs, _kind = read_slide(str(he_slide))[0]
    return data, kwargs
