import numpy as np
import pytest
from skimage.filters import gaussian

from napari_gradcam.core.trust.quality import neighbour_correlation, noise_indicators
from tests.core.he_tiles import he_tile

BLOB = gaussian(np.eye(1, 144, 5 * 12 + 6).reshape(12, 12), sigma=2)


def test_a_glass_tile_is_flagged_blank_and_explained() -> None:
    indicators = noise_indicators(BLOB, he_tile("glass"), (8, 8))
    assert indicators.blank and indicators.tissue_fraction == 0.0
    assert indicators.energy_on_tissue == 0.0
    assert indicators.warnings[0].startswith("blank tile")
    assert "not evidence for any class" in indicators.warnings[0]


def test_a_focused_map_on_tissue_raises_no_warning() -> None:
    indicators = noise_indicators(BLOB, he_tile("dense"), (8, 8))
    assert not indicators.blank and not indicators.flat
    assert indicators.energy_on_tissue > 0.95
    assert indicators.autocorrelation > 0.8 and indicators.entropy < 0.9
    assert indicators.warnings == ()


def test_speckle_spread_and_flat_maps_are_named() -> None:
    noise = np.random.default_rng(0).random((12, 12))
    speckled = noise_indicators(noise, he_tile("dense"), (8, 8))
    assert speckled.autocorrelation < 0.2
    assert any("speckled like noise" in w for w in speckled.warnings)
    spread = noise_indicators(1 + noise / 10, he_tile("dense"), (8, 8))
    assert spread.entropy > 0.99
    assert any("spread almost evenly" in w for w in spread.warnings)
    flat = noise_indicators(np.zeros((12, 12)), he_tile("dense"), (8, 8))
    assert flat.flat and any("zero everywhere" in w for w in flat.warnings)


def test_a_map_on_glass_beside_tissue_is_named() -> None:
    image = np.concatenate([he_tile("glass")[:, :48], he_tile("dense")[:, :48]], axis=1)
    on_glass = np.zeros((12, 12))
    on_glass[4:8, 1:4] = 1.0
    indicators = noise_indicators(on_glass, image, (8, 8))
    assert not indicators.blank and indicators.energy_on_tissue < 0.1
    assert any("lies on tissue" in w for w in indicators.warnings)


def test_gray_images_skip_the_tissue_measures() -> None:
    gray = np.random.default_rng(0).integers(0, 255, (96, 96), dtype=np.uint8)
    indicators = noise_indicators(BLOB, gray, (8, 8))
    assert indicators.tissue_fraction is None and indicators.energy_on_tissue is None
    assert not indicators.blank


def test_neighbour_correlation_needs_two_by_two_cells_with_variation() -> None:
    assert neighbour_correlation(np.ones((1, 5))) is None
    assert neighbour_correlation(np.ones((4, 4))) is None
    assert neighbour_correlation(np.add.outer(np.arange(6), np.arange(6))) == pytest.approx(
        1.0, abs=0.1
    )
