"""Does the demo segmenter's "nuclei" output, asked about a drawn region, rest on nuclei?

The segmenter's labels come from the stain, so its "nuclei" pixels are known: the nuclei mask.
On held-out nuclei-dense tiles, the Grad-CAM of the nuclei logits summed inside a square
drawn over the tile must fall on nuclei far more than their area share would give by chance.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize

import napari_gradcam as ng
from napari_gradcam.models.demo_segmenter import CLASSES
from napari_gradcam.training.stain_labels import CLASSES as TILE_CLASSES
from tests.models.localisation import energy_ratio, he_tile, held_out_tissue

pytestmark = pytest.mark.slow  # explains every held-out nuclei-dense CC0 tile (about 20 s)


@pytest.fixture(scope="module")
def segmenter() -> ng.LoadedModel:
    return ng.load_model("demo-segmenter", device="cpu")


@pytest.fixture(scope="module")
def dense_tiles(he_evidence) -> np.ndarray:
    """Held-out nuclei-dense tiles, by the demo classifier's card (its labels and split)."""
    index, labels = held_out_tissue(ng.load_model("demo", device="cpu").card, he_evidence)
    return index[labels == TILE_CLASSES.index("nuclei-dense")]


def test_card_declares_a_dense_output(segmenter) -> None:
    assert segmenter.card.output == "dense" and segmenter.card.classes == CLASSES
    assert segmenter.card.extra["held_out_iou"]["nuclei"] >= 0.75


def test_output_region_map_falls_on_nuclei(segmenter, he_evidence, dense_tiles) -> None:
    assert len(dense_tiles) >= 10
    drawn = np.zeros((96, 96), dtype=bool)
    drawn[24:72, 24:72] = True
    target = ng.OutputRegion("nuclei", mask=drawn, label="drawn square")
    tile_ratios, drawn_ratios = [], []
    for i in dense_tiles:
        nuclei = he_evidence.masks(i)[1]
        exp = ng.explain(segmenter, he_tile(he_evidence, i), target=target)
        assert exp.layer == segmenter.card.default_layer and exp.stride == (1.0, 1.0)
        tile_ratios.append(energy_ratio(exp.cam, nuclei))
        if nuclei[drawn].any():
            cam = resize(exp.cam, drawn.shape, order=1)
            share = cam[drawn & nuclei].sum() / cam[drawn].sum()
            drawn_ratios.append(share / nuclei[drawn].mean())
    assert np.mean(tile_ratios) >= 1.5, f"mean energy ratio {np.mean(tile_ratios):.2f}"
    assert np.mean(np.array(tile_ratios) > 1.0) >= 0.9
    assert np.mean(drawn_ratios) >= 1.5, f"inside the square: {np.mean(drawn_ratios):.2f}"
