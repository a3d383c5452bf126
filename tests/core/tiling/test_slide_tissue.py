import numpy as np
import pytest

from napari_gradcam.core.tiling.slide_tissue import (
    MIN_OBJECT_PX,
    MIN_SATURATION,
    TissueMap,
    mask_source,
    slide_tissue,
)
from napari_gradcam.core.tiling.tissue import tissue_mask
from napari_gradcam.data import read_he_region

GLASS = (241, 238, 243)


@pytest.fixture(scope="module")
def he_tissue() -> TissueMap:
    return slide_tissue([read_he_region()], [(1.0, 1.0)])


def test_the_cc0_slide_has_a_third_of_tissue_found_at_low_resolution(he_tissue):
    assert he_tissue.mask.shape == (1484, 1110) and he_tissue.pixel_size == (2.0, 2.0)
    assert 0.2 < he_tissue.mask.mean() < 0.35
    assert not he_tissue.mask[750:850, :100].any()  # glass on the left
    boxes = np.array([[1632, 240, 1728, 336], [1200, 1200, 1296, 1296]])  # glass, dense tissue
    glass, dense = he_tissue.fractions(boxes)
    assert glass < 0.05 and dense > 0.9


def test_glass_alone_has_no_tissue():
    rng = np.random.default_rng(0)
    glass = np.clip(np.array(GLASS) + rng.normal(0, 2, (200, 300, 3)), 0, 255).astype(np.uint8)
    assert not tissue_mask(glass, None, min_saturation=MIN_SATURATION).any()


def test_small_specks_are_removed():
    image = np.tile(np.array(GLASS, np.uint8), (100, 100, 1))
    image[10:13, 10:13] = (150, 40, 120)  # 9 px speck
    image[50:80, 40:90] = (200, 100, 170)  # tissue
    mask = tissue_mask(image, None, min_saturation=MIN_SATURATION, min_size=MIN_OBJECT_PX)
    assert not mask[10:13, 10:13].any() and mask[50:80, 40:90].all()


def test_fractions_match_counting(he_tissue):
    rng = np.random.default_rng(3)
    starts = rng.integers(0, (2600, 1900), (20, 2)).astype(float)
    boxes = np.hstack([starts, starts + rng.integers(20, 300, (20, 2))])
    fractions = he_tissue.fractions(boxes)
    for box, fraction in zip(boxes / 2.0, fractions, strict=True):
        y0, x0, y1, x1 = np.round(box).astype(int)
        expected = he_tissue.mask[y0:y1, x0:x1].mean()
        assert fraction == pytest.approx(expected, abs=1e-6)


def test_the_mask_comes_from_a_low_level_or_a_strided_read():
    shapes = [(40000, 30000, 3), (10000, 7500, 3), (2500, 1875, 3)]
    assert mask_source(shapes, 2048) == (2, 2)
    assert mask_source(shapes, 4096) == (2, 1)
    assert mask_source(shapes[:1], 2048) == (0, 20)


def test_a_pyramid_uses_its_coarse_level():
    fine = np.tile(np.array(GLASS, np.uint8), (512, 768, 1))
    fine[128:384, 256:512] = (190, 90, 160)
    levels = [fine, fine[::4, ::4]]
    tissue = slide_tissue(levels, [(1.0, 1.0), (4.0, 4.0)], max_side=256)
    assert tissue.mask.shape == (128, 192) and tissue.pixel_size == (4.0, 4.0)
    inside, outside = tissue.fractions(np.array([[128, 256, 384, 512], [0, 0, 100, 100]]))
    assert inside == 1.0 and outside == 0.0


def test_grayscale_images_are_refused():
    with pytest.raises(ValueError, match="needs an RGB"):
        tissue_mask(np.zeros((10, 10)))
