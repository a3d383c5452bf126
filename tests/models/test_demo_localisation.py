"""Does the demo model look at the right thing? Grad-CAM vs stain-derived nuclei masks.

The demo model's "nuclei-dense" label is computed from the hematoxylin stain, so the
pixels that justify it are known: the nuclei mask. On held-out tiles (a part of the slide
never seen in training) the Grad-CAM energy for "nuclei-dense" must fall on nuclei far
more than their area share would give by chance.
"""

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from tests.models.localisation import energy_ratio, he_tile, held_out_tissue

pytestmark = pytest.mark.slow  # explains every held-out CC0 tile (about 10 s)


@pytest.fixture(scope="module")
def demo():
    return ng.load_model("demo")


@pytest.fixture(scope="module")
def held_out(demo, he_evidence):
    """Indices and labels of held-out tiles that contain tissue."""
    return held_out_tissue(demo.card, he_evidence)


def test_demo_model_is_accurate_on_held_out_tissue(demo, he_evidence, held_out) -> None:
    index, labels = held_out
    card = demo.card
    tiles = np.stack([he_tile(he_evidence, i) for i in index]).astype(np.float32) / 255.0
    batch = (torch.from_numpy(tiles) - torch.tensor(card.mean)) / torch.tensor(card.std)
    exp = ng.explain(demo, batch.permute(0, 3, 1, 2).contiguous())
    assert exp.cam.shape == (len(index), 12, 12)
    accuracy = np.mean(exp.targets == labels)
    assert accuracy >= 0.8, f"held-out tissue accuracy {accuracy:.3f}"


def test_gradcam_for_nuclei_dense_falls_on_nuclei(demo, he_evidence, held_out) -> None:
    index, labels = held_out
    dense = index[labels == 2]
    assert len(dense) >= 10
    ratios, control = [], []
    for i in dense:
        tile = he_tile(he_evidence, i)
        nuclei = he_evidence.masks(i)[1]
        exp = ng.explain(demo, tile, target="nuclei-dense")
        assert exp.layer == demo.card.default_layer and exp.stride == (8.0, 8.0)
        assert exp.target_names == ("nuclei-dense",)
        ratios.append(energy_ratio(exp.cam, nuclei))
        stroma = ng.explain(demo, tile, target="stroma").cam
        if stroma.sum() > 0:
            control.append(energy_ratio(stroma, nuclei))
    ratios = np.array(ratios)
    assert ratios.mean() >= 1.5, f"mean energy ratio {ratios.mean():.2f}"
    assert np.mean(ratios > 1.0) >= 0.9
    # the map depends on the class asked about: "stroma" evidence avoids nuclei
    assert np.mean(control) < 1.0 < ratios.mean()
