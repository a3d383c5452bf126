"""The shipped demo slide model: each tile score finds the nuclei-dense tiles of held-out bags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.models.slide_model import SlideModel, load_slide_model
from napari_gradcam.slides.mil_scores import score_tiles
from napari_gradcam.training.mil_bags import (
    DEMO_CARD,
    DemoTiles,
    demo_tiles,
    make_bags,
)
from napari_gradcam.training.train_mil_demo import ATTENTION_NORM
from tests.models.localisation import ranking_auc

pytestmark = pytest.mark.slow  # embeds every held-out bag of the CC0 slide (about 30 s)

POSITIVE = 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[SlideModel, DemoTiles]:
    model = load_slide_model(DEMO_CARD, device="cpu")
    return model, demo_tiles(model, cache_dir=tmp_path_factory.mktemp("embeddings"))


def test_ranking_auc_matches_the_pairwise_definition() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.5, 0.3])
    truth = np.array([True, False, True, False, False])
    # pairs (pos, neg): 0.9 beats all three; 0.5 beats 0.1 and 0.3, ties 0.5 -> 5.5 / 6
    assert ranking_auc(scores, truth) == pytest.approx(5.5 / 6)


def held_out_aucs(model: SlideModel, tiles: DemoTiles) -> dict[str, list[float]]:
    """Per held-out bag (with both kinds of tiles), the AUC of each score for the true tiles."""
    bags, _labels = make_bags(tiles.positive, np.flatnonzero(tiles.held_out), 40, seed=7)
    aucs: dict[str, list[float]] = {}
    for bag in bags:
        truth = tiles.positive[bag]
        if truth.all() or not truth.any():
            continue
        scores = score_tiles(model, tiles.embeddings[bag], target=POSITIVE)
        for name, values in scores.scores.items():
            aucs.setdefault(name, []).append(ranking_auc(values, truth))
    return aucs


@pytest.fixture(scope="module")
def aucs(demo: tuple[SlideModel, DemoTiles]) -> dict[str, float]:
    per_bag = held_out_aucs(*demo)
    assert set(per_bag) == {"attention", "grad_x_embedding", "integrated_gradients"}
    assert len(per_bag["attention"]) >= 10
    return {name: float(np.mean(values)) for name, values in per_bag.items()}


@pytest.mark.parametrize("score", ["attention", "grad_x_embedding", "integrated_gradients"])
def test_each_score_ranks_the_positive_tiles_of_held_out_bags(
    aucs: dict[str, float], score: str
) -> None:
    assert aucs[score] >= 0.9


def test_the_demo_attention_was_trained_within_its_bound(
    demo: tuple[SlideModel, DemoTiles],
) -> None:
    weight = demo[0].aggregator.attention.score.weight
    assert float(weight.detach().norm()) <= ATTENTION_NORM * (1 + 1e-5)


def test_the_demo_model_tells_positive_bags(demo: tuple[SlideModel, DemoTiles]) -> None:
    import torch

    model, tiles = demo
    bags, labels = make_bags(tiles.positive, np.flatnonzero(tiles.held_out), 100, seed=11)
    with torch.inference_mode():
        logits = model.aggregator(torch.from_numpy(tiles.embeddings[bags]).float())
    accuracy = float((logits.argmax(dim=1).numpy() == labels).mean())
    assert accuracy >= 0.75  # chance is 0.5


def test_the_demo_weights_are_small() -> None:
    weights = Path(DEMO_CARD).with_name("mil_demo.safetensors")
    assert weights.stat().st_size < 100_000
