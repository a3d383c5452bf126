import numpy as np
import pytest

from napari_gradcam.core.tiling.tissue import (
    MIN_TISSUE_FRACTION,
    cell_fractions,
    tissue_fraction,
    tissue_mask,
)
from tests.core.he_tiles import he_tile


def test_glass_has_no_tissue_and_stained_tissue_fills_its_tile() -> None:
    assert tissue_fraction(he_tile("glass")) < MIN_TISSUE_FRACTION / 10
    assert tissue_fraction(he_tile("dense")) > 0.9


def test_the_mask_ignores_alpha_and_dtype() -> None:
    rgb = he_tile("dense_edge")
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=-1)
    as_float = rgb.astype(np.float32) / 255
    np.testing.assert_array_equal(tissue_mask(rgba), tissue_mask(rgb))
    np.testing.assert_array_equal(tissue_mask(as_float), tissue_mask(rgb))
    assert 0.2 < tissue_mask(rgb).mean() < 0.8


def test_gray_images_have_no_tissue_measure() -> None:
    gray = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    assert tissue_fraction(gray) is None
    with pytest.raises(ValueError, match="RGB brightfield"):
        tissue_mask(gray)


def test_cell_fractions_are_block_means_with_clipped_edges() -> None:
    mask = np.random.default_rng(1).random((20, 22)) > 0.5
    cells = cell_fractions(mask, (3, 3), (8, 8))
    assert cells.dtype == np.float32
    assert cells[0, 0] == pytest.approx(mask[:8, :8].mean())
    assert cells[2, 2] == pytest.approx(mask[16:20, 16:22].mean())
    uneven = cell_fractions(mask, (4, 4), (5.0, 5.5))
    assert uneven[1, 1] == pytest.approx(mask[5:10, 5:11].mean())
    assert uneven[3, 3] == pytest.approx(mask[15:20, 16:22].mean())
