import numpy as np
import pytest

from napari_gradcam.core.tiling.slide_tissue import MIN_SATURATION
from napari_gradcam.core.tiling.tissue import (
    MIN_TISSUE_FRACTION,
    TISSUE_SATURATION,
    cell_fractions,
    hsv_saturation,
    tissue_fraction,
    tissue_mask,
)
from tests.core.he_tiles import he_tile


def test_glass_has_no_tissue_and_stained_tissue_fills_its_tile() -> None:
    assert tissue_fraction(he_tile("glass")) < MIN_TISSUE_FRACTION / 10
    assert tissue_fraction(he_tile("dense")) > 0.9


def test_saturation_equals_rgb2hsv_for_every_uint8_pixel_and_other_dtypes() -> None:
    levels = np.arange(256, dtype=np.uint8)
    high, low = np.meshgrid(levels, levels, indexing="ij")
    mid = ((high.astype(int) + low) // 2).astype(np.uint8)
    every = np.stack([high, mid, low], axis=-1)  # every (max, min) pair, and max < min ones
    np.testing.assert_array_equal(hsv_saturation(every), _saturation(every))
    rng = np.random.default_rng(3)
    for pixels in (
        rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
        rng.integers(0, 65536, (40, 30, 3), dtype=np.uint16),
        rng.random((40, 30, 3)).astype(np.float32),
        np.zeros((4, 4, 3)),
    ):
        np.testing.assert_array_equal(hsv_saturation(pixels), _saturation(pixels))


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


def _saturation(rgb: np.ndarray) -> np.ndarray:
    from skimage import color

    return color.rgb2hsv(rgb[..., :3])[..., 1]


def _otsu(values: np.ndarray) -> float:
    from skimage import filters

    return float(filters.threshold_otsu(values))


def _specks_dropped(mask: np.ndarray, min_size: int, connectivity: int) -> np.ndarray:
    from skimage import measure

    labels = measure.label(mask, connectivity=connectivity)
    sizes = np.bincount(labels.ravel())
    return (sizes >= min_size)[labels] & mask


@pytest.fixture(scope="module")
def he_thumbnail() -> np.ndarray:
    from napari_gradcam.data import read_he_region

    return read_he_region()[::4, ::4]


def test_one_function_gives_the_tile_and_training_masks(he_thumbnail) -> None:
    """The old tile rule (0.15, specks < 16) and the demo labels' (Otsu, specks < 64)."""
    saturation = _saturation(he_thumbnail)
    tile_rule = _specks_dropped(saturation > TISSUE_SATURATION, 16, connectivity=2)
    np.testing.assert_array_equal(tissue_mask(he_thumbnail), tile_rule)
    training_rule = _specks_dropped(saturation > _otsu(saturation), 64, connectivity=2)
    np.testing.assert_array_equal(tissue_mask(he_thumbnail, None, min_size=64), training_rule)
    assert 0.2 < training_rule.mean() < tile_rule.mean() < 0.6


def test_one_function_gives_the_slide_mask_with_diagonal_specks_kept(he_thumbnail) -> None:
    """The old slide rule dropped specks 4-connected; the one rule joins diagonal pixels."""
    saturation = _saturation(he_thumbnail)
    threshold = max(_otsu(saturation), MIN_SATURATION)
    old = _specks_dropped(saturation > threshold, 64, connectivity=1)
    new = tissue_mask(he_thumbnail, None, min_saturation=MIN_SATURATION, min_size=64)
    assert not (old & ~new).any()
    assert (new & ~old).sum() < 0.03 * old.sum()  # 2 % on this thumbnail
    np.testing.assert_array_equal(new, _specks_dropped(saturation > threshold, 64, 2))


def test_the_saturation_floor_keeps_glass_empty() -> None:
    rng = np.random.default_rng(0)
    glass = np.clip(rng.normal(240, 2, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert tissue_mask(glass, None, min_size=1).any()  # Otsu splits even pure glass
    assert not tissue_mask(glass, None, min_saturation=MIN_SATURATION, min_size=1).any()
