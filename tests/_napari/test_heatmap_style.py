"""The heatmap's look: 0-1 of its range, a colormap clear at the low end, glass cleared."""

import numpy as np
import pytest
from napari.utils.colormaps import ensure_colormap

from napari_gradcam._napari.heatmap_style import (
    CLEAR_BELOW,
    HEATMAP_COLORMAP,
    clear_glass,
    heatmap_colormap,
    to_display,
)
from napari_gradcam.core.tiling.slide_tissue import TissueMap


def test_the_map_is_shown_as_0_to_1_of_its_range_and_the_range_is_kept():
    shown, raw = to_display(np.array([[2.0, 4.0], [3.0, 6.0]]))
    np.testing.assert_allclose(shown, [[0.0, 0.5], [0.25, 1.0]])
    assert raw == (2.0, 6.0) and shown.dtype == np.float32
    flat, raw = to_display(np.full((2, 2), 7.0))
    assert not flat.any() and raw == (7.0, 7.0)  # nothing stands out: nothing painted


def test_the_colormap_is_clear_below_its_threshold_and_found_by_name():
    colormap = heatmap_colormap()
    alpha = colormap.map(np.linspace(0.0, CLEAR_BELOW, 5))[:, 3]
    assert not alpha.any() and colormap.map(np.array([1.0]))[0, 3] == 1.0
    assert ensure_colormap(HEATMAP_COLORMAP) is colormap  # a saved session finds it again


def test_cells_whose_centre_is_on_glass_are_cleared():
    mask = np.zeros((4, 4), bool)
    mask[:, :2] = True  # tissue on the left half; one mask pixel = 8 level-0 pixels
    tissue = TissueMap(mask, (8.0, 8.0))
    shown = np.ones((2, 4), np.float32)  # cells of 16 x 8 level-0 pixels from (0, 0)
    cleared = clear_glass(shown, (16.0, 8.0), (0.0, 0.0), tissue)
    np.testing.assert_array_equal(cleared, [[1, 1, 0, 0], [1, 1, 0, 0]])
    shifted = clear_glass(shown, (16.0, 8.0), (0.0, 8.0), tissue)  # one cell to the right
    np.testing.assert_array_equal(shifted, [[1, 0, 0, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize(
    ("spec", "weights", "name"),
    [
        ("demo", None, "demo"),
        ("demo-vit", None, "demo-vit"),
        ("tests/_napari/tiny_models.py:factory", "/data/tiny.pt", "tiny"),
        ("tests/_napari/tiny_models.py:factory", None, "tiny_models"),
        ("my_package.models:build", None, "models"),
        ("timm:resnet18", "/w/resnet18_tcga.safetensors", "resnet18_tcga"),
        ("timm:vit_small_patch16_224", None, "vit_small_patch16_224"),
        ("/models/scripted.pt", None, "scripted"),
    ],
)
def test_model_names_are_short(spec, weights, name):
    from napari_gradcam._napari.result_layers import model_label

    assert model_label(spec, weights) == name
