import numpy as np
import pytest

from napari_gradcam.core.tiling.tissue import remove_specks, tissue_mask
from napari_gradcam.training.stain_labels import (
    CLASSES,
    MIN_TISSUE_FRACTION,
    TISSUE_SPECK_PX,
    label_from_fractions,
    nuclei_mask,
    tile_fractions,
)

GLASS = (242, 242, 244)
EOSIN = (235, 140, 190)  # pink stroma
HEMATOXYLIN = (70, 40, 130)  # dark purple nuclei


def tile_label(
    tissue: np.ndarray,
    nuclei: np.ndarray,
    nuclei_cutoff: float,
    min_tissue: float = MIN_TISSUE_FRACTION,
) -> int:
    """Return the class index of one tile from its evidence masks."""
    fractions = tile_fractions(tissue, nuclei)
    return int(label_from_fractions(*fractions, nuclei_cutoff, min_tissue))


@pytest.fixture
def synthetic_slide() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Glass with a pink square of tissue holding four purple 'nuclei'."""
    rgb = np.full((120, 120, 3), GLASS, dtype=np.uint8)
    tissue = np.zeros((120, 120), dtype=bool)
    tissue[20:100, 20:100] = True
    nuclei = np.zeros_like(tissue)
    for r, c in [(30, 30), (30, 70), (70, 30), (70, 70)]:
        nuclei[r : r + 10, c : c + 10] = True
    rgb[tissue] = EOSIN
    rgb[nuclei] = HEMATOXYLIN
    return rgb, tissue, nuclei


def test_remove_specks_keeps_only_large_components() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[1:3, 1:3] = True  # 4 px
    mask[10:15, 10:15] = True  # 25 px
    kept = remove_specks(mask, min_size=5)
    assert kept.sum() == 25 and kept[12, 12] and not kept[1, 1]


def test_masks_find_synthetic_tissue_and_nuclei(synthetic_slide) -> None:
    rgb, tissue, nuclei = synthetic_slide
    found_tissue = tissue_mask(rgb, None, min_size=TISSUE_SPECK_PX)
    np.testing.assert_array_equal(found_tissue, tissue)
    found_nuclei = nuclei_mask(rgb, found_tissue)
    np.testing.assert_array_equal(found_nuclei, nuclei)


def test_nuclei_mask_drops_specks_and_stays_inside_tissue(synthetic_slide) -> None:
    rgb, tissue, nuclei = synthetic_slide
    rgb = rgb.copy()
    rgb[50:52, 50:52] = HEMATOXYLIN  # a 4 px speck
    rgb[5:15, 5:15] = HEMATOXYLIN  # dark debris on glass, outside the given tissue mask
    found = nuclei_mask(rgb, tissue)
    np.testing.assert_array_equal(found, nuclei)


def test_tile_label_rules() -> None:
    tissue = np.zeros((10, 10), dtype=bool)
    nuclei = np.zeros_like(tissue)
    assert CLASSES[tile_label(tissue, nuclei, 0.2)] == "background"
    tissue[:5] = True  # half tissue
    assert CLASSES[tile_label(tissue, nuclei, 0.2)] == "stroma"
    nuclei[:2] = True  # 20 of 50 tissue pixels
    assert tile_fractions(tissue, nuclei) == (0.5, 0.4)
    assert CLASSES[tile_label(tissue, nuclei, 0.2)] == "nuclei-dense"
    assert CLASSES[tile_label(tissue, nuclei, 0.2, min_tissue=0.6)] == "background"


def test_vectorised_rule_matches_tile_label() -> None:
    tissue_fraction = np.array([0.0, MIN_TISSUE_FRACTION - 0.01, 0.5, 0.5, 1.0])
    nuclei_fraction = np.array([0.9, 0.9, 0.1, 0.3, 0.2])
    np.testing.assert_array_equal(
        label_from_fractions(tissue_fraction, nuclei_fraction, 0.2), [0, 0, 1, 2, 1]
    )


def test_slide_evidence_on_the_he_slide(he_evidence) -> None:
    ev = he_evidence
    assert ev.tissue.shape == ev.nuclei.shape == (2967, 2220)
    assert not np.any(ev.nuclei & ~ev.tissue)
    assert 0.2 < ev.tissue.mean() < 0.4  # most of the region is glass
    assert 0.1 < ev.nuclei.sum() / ev.tissue.sum() < 0.3
    assert len(ev.origins) == 60 * 45
    labels = ev.labels(nuclei_cutoff=0.12)
    assert set(np.unique(labels)) == {0, 1, 2}
    for index in (0, 1234, 2000):
        tissue, nuclei = ev.masks(index)
        assert tissue.shape == (96, 96)
        assert tile_label(tissue, nuclei, 0.12) == labels[index]
