"""Does the demo vision-language model answer prompts and regions with the right evidence?

Its captions come from the stain-derived labels, so the pixels that justify "nuclei-dense
tissue" are known: the nuclei mask. On held-out tiles (a part of the slide never seen in
training) the prompt's Grad-CAM energy must fall on nuclei far more than their area share
would give by chance, and a search for tiles like a nuclei-dense region must rank the
nuclei-dense tiles first.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import napari_gradcam as ng
from napari_gradcam.data import read_he_region
from napari_gradcam.models.bundled import DEMO_DIR
from napari_gradcam.training.stain_labels import CLASSES
from napari_gradcam.training.vlm_captions import CLASS_PROMPTS
from tests.models.localisation import energy_ratio, he_tile, held_out_tissue, ranking_auc

pytestmark = pytest.mark.slow  # explains every held-out nuclei-dense CC0 tile (about 20 s)

NUCLEI_DENSE = CLASSES.index("nuclei-dense")
REGION_SIDE = 192
"""Side of the reference region of the region-like-this search: two tiles of the model."""


@pytest.fixture(scope="module")
def vlm() -> ng.LoadedModel:
    return ng.load_model("demo-vlm", device="cpu")


@pytest.fixture(scope="module")
def held_out(vlm, he_evidence) -> tuple[np.ndarray, np.ndarray]:
    """Indices and labels of held-out tiles that contain tissue."""
    return held_out_tissue(vlm.card, he_evidence)


def tile_embeddings(loaded: ng.LoadedModel, tiles: np.ndarray) -> torch.Tensor:
    """(N, D) normalised embeddings of (N, H, W, 3) uint8 tiles, normalised by the card."""
    card = loaded.card
    x = (torch.from_numpy(tiles).float() / 255.0 - torch.tensor(card.mean)) / torch.tensor(card.std)
    with torch.no_grad():
        return F.normalize(loaded.module(x.permute(0, 3, 1, 2).contiguous()), dim=1)


def test_zero_shot_accuracy_on_held_out_tissue(vlm, he_evidence, held_out) -> None:
    index, labels = held_out
    tiles = np.stack([he_tile(he_evidence, i) for i in index])
    prompts = vlm.text.embed([CLASS_PROMPTS[name] for name in CLASSES])
    predicted = (tile_embeddings(vlm, tiles) @ prompts.T).argmax(dim=1).numpy()
    accuracy = np.mean(predicted == labels)
    assert accuracy >= 0.9, f"held-out zero-shot accuracy {accuracy:.3f} on tissue tiles"


def test_prompt_map_falls_on_nuclei(vlm, he_evidence, held_out) -> None:
    index, labels = held_out
    dense = index[labels == NUCLEI_DENSE]
    assert len(dense) >= 10
    ratios, control = [], []
    for i in dense:
        tile = he_tile(he_evidence, i)
        nuclei = he_evidence.masks(i)[1]
        exp = ng.explain(vlm, tile, target=ng.Prompt(("nuclei-dense tissue",)))
        assert exp.layer == vlm.card.default_layer and exp.stride == (4.0, 4.0)
        ratios.append(energy_ratio(exp.cam, nuclei))
        stroma = ng.explain(vlm, tile, target=ng.Prompt(("stroma",))).cam
        if stroma.sum() > 0:
            control.append(energy_ratio(stroma, nuclei))
    ratios = np.array(ratios)
    assert ratios.mean() >= 1.5, f"mean energy ratio {ratios.mean():.2f}"
    assert np.mean(ratios > 1.0) >= 0.6
    # the map depends on the prompt: "stroma" evidence avoids nuclei
    assert np.mean(control) < 1.0 < ratios.mean()


def densest_training_region(he_evidence, held_out_x: int) -> np.ndarray:
    """The REGION_SIDE px square left of the split whose tissue holds the most nuclei."""
    tissue, nuclei = he_evidence.tissue, he_evidence.nuclei
    best, best_fraction = (0, 0), -1.0
    for r in range(0, tissue.shape[0] - REGION_SIDE + 1, 48):
        for c in range(0, held_out_x - REGION_SIDE + 1, 48):
            window = np.s_[r : r + REGION_SIDE, c : c + REGION_SIDE]
            if tissue[window].mean() < 0.9:
                continue
            fraction = nuclei[window].sum() / tissue[window].sum()
            if fraction > best_fraction:
                best, best_fraction = (r, c), fraction
    r, c = best
    return np.ascontiguousarray(read_he_region()[r : r + REGION_SIDE, c : c + REGION_SIDE])


@pytest.mark.parametrize("encoder", ["demo-vlm", "demo-encoder"])
def test_region_like_this_ranks_nuclei_dense_tiles_first(encoder, vlm, he_evidence, held_out):
    if encoder == "demo-vlm":
        loaded = vlm
    else:
        demo_card = ng.load_model("demo", device="cpu").card
        loaded = ng.load_model(
            "napari_gradcam.models.demo_encoder:build_demo_encoder",
            weights=DEMO_DIR / "demo_net.pt",
            card=replace(demo_card, classes=(), output="embedding"),
            classifier=False,
            device="cpu",
        )
    region = densest_training_region(he_evidence, vlm.card.extra["held_out_x"])
    like = ng.embed_region(loaded, region)
    assert isinstance(like, ng.LikeEmbedding) and len(like.embedding) == 64
    index, labels = held_out
    tiles = np.stack([he_tile(he_evidence, i) for i in index])
    reference = F.normalize(torch.tensor(like.embedding), dim=0)
    similarity = (tile_embeddings(loaded, tiles) @ reference).numpy()
    auc = ranking_auc(similarity, labels == NUCLEI_DENSE)
    assert auc >= 0.9, f"{encoder}: AUC {auc:.3f} of nuclei-dense vs stroma tiles"
    # the explanation's score is that similarity
    exp = ng.explain(loaded, tiles[0], target=like)
    np.testing.assert_allclose(exp.scores[0], similarity[0], atol=1e-4)
