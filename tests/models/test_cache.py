"""One model cache for the docks and the slide runner: same object, reload on change, bounded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from napari_gradcam.models import cache
from napari_gradcam.models.cache import cached_model, cached_slide_model, file_stamps
from tests.mil_cards import write_card

FACTORY = f"{Path(__file__).parents[1] / '_napari' / 'tiny_models.py'}:factory"


def tiny_factory():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_models", FACTORY.rpartition(":")[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.factory


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "retrained.pt"
    torch.save(tiny_factory()().state_dict(), path)
    return path


def test_a_model_is_loaded_once_and_again_when_its_weights_file_changes(weights):
    first = cached_model(FACTORY, str(weights))
    assert cached_model(FACTORY, str(weights)) is first  # unchanged: cached
    state = {name: value + 1 for name, value in tiny_factory()().state_dict().items()}
    torch.save(state, weights)
    os.utime(weights, ns=(1, 1))  # a different time stamp even on a coarse clock
    second = cached_model(FACTORY, str(weights))
    assert second is not first
    name, value = next(iter(state.items()))
    torch.testing.assert_close(second.module.state_dict()[name], value)


def test_the_docks_and_the_slide_runner_share_the_cache(weights):
    from napari_gradcam.slides import batches, runner

    assert batches.cached_model is cached_model and runner.cached_model is cached_model
    loaded = cached_model(FACTORY, str(weights))
    assert batches.cached_model(FACTORY, str(weights)) is loaded


def test_the_least_recently_used_model_is_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "MAX_MODELS", 2)
    paths = []
    for index in range(3):
        paths.append(str(tmp_path / f"w{index}.pt"))
        torch.save(tiny_factory()().state_dict(), paths[-1])
    first = cached_model(FACTORY, paths[0])
    cached_model(FACTORY, paths[1])
    assert cached_model(FACTORY, paths[0]) is first  # used again: now the most recent
    cached_model(FACTORY, paths[2])  # drops paths[1]
    assert cached_model(FACTORY, paths[0]) is first
    assert (FACTORY, paths[1]) not in cache._MODELS


def test_file_stamps_cover_the_spec_file_the_weights_and_their_cards(weights):
    card = weights.with_suffix(".json")
    card.write_text("{}")
    stamped = {path for path, _size, _mtime in file_stamps(FACTORY, str(weights))}
    assert stamped == {FACTORY.rpartition(":")[0], str(weights), str(card)}
    demo = {Path(path).name for path, _size, _mtime in file_stamps("demo", None)}
    assert demo == {"demo_net.pt", "demo_net.json"}


def test_a_card_that_appears_beside_the_weights_reloads_the_model(weights):
    first = cached_model(FACTORY, str(weights))
    weights.with_suffix(".json").write_text(json.dumps({"name": "now with a card"}))
    second = cached_model(FACTORY, str(weights))
    assert second is not first and second.card.name == "now with a card"


BACKBONES = """
from torch import nn


def backbone(width=4):
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def encoder():
    return backbone(64)
"""


@pytest.fixture
def backbones(tmp_path) -> Path:
    path = tmp_path / "backbones.py"
    path.write_text(BACKBONES)
    return path


def test_a_factory_file_edit_reloads_the_model(backbones):
    first = cached_model(f"{backbones}:backbone")
    backbones.write_text(BACKBONES.replace("width=4", "width=5"))
    os.utime(backbones, ns=(1, 1))
    second = cached_model(f"{backbones}:backbone")
    assert second is not first and second.module[0].out_channels == 5


def test_a_recipe_reloads_when_its_head_weights_change(tmp_path, backbones):
    recipe = tmp_path / "recipe.json"
    head = tmp_path / "head.pt"
    spec = f"{backbones}:backbone"
    recipe.write_text(
        json.dumps({"backbone": {"spec": spec}, "head": {"layers": [4, 2], "weights": "head.pt"}})
    )
    torch.save({"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, head)
    first = cached_model(str(recipe), trust_code=True)  # the backbone is a test .py file
    torch.save({"weight": torch.ones(2, 4), "bias": torch.zeros(2)}, head)
    os.utime(head, ns=(1, 1))
    second = cached_model(str(recipe), trust_code=True)
    assert second is not first
    assert float(second.module.head[0].weight.detach().sum()) == 8.0


def test_a_slide_model_is_loaded_once_and_again_when_its_card_changes(tmp_path) -> None:
    card = write_card(tmp_path / "slide_model.json", name="first")
    first = cached_slide_model(card, trust_code=True)
    assert cached_slide_model(str(card)) is first and first.name == "first"
    stat = card.stat()
    write_card(card, name="second")
    os.utime(card, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = cached_slide_model(card, trust_code=True)
    assert again is not first and again.name == "second"


def test_a_missing_slide_model_card_says_what_to_choose(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no slide-model card .*; choose a \.json card"):
        cached_slide_model(tmp_path / "missing.json")


def retrain(path: Path, value: float) -> None:
    """Write aggregator weights filled with ``value`` (a different time stamp each call)."""
    from safetensors.torch import save_file

    from napari_gradcam.core.mil.aggregators import build_attention_mil

    state = build_attention_mil(in_dim=64, n_classes=2).state_dict()
    save_file({name: torch.full_like(tensor, value) for name, tensor in state.items()}, path)
    os.utime(path, ns=(int(value * 10**9), int(value * 10**9)))


def test_a_slide_model_reloads_after_retraining_into_the_same_aggregator_weights(tmp_path):
    weights = tmp_path / "aggregator.safetensors"
    retrain(weights, 1.0)
    aggregator = {
        "spec": "napari_gradcam.core.mil.aggregators:build_attention_mil",
        "kwargs": {"in_dim": 64, "n_classes": 2},
        "weights": weights.name,
    }
    card = write_card(tmp_path / "slide_model.json", aggregator=aggregator)
    first = cached_slide_model(card, trust_code=True)
    assert cached_slide_model(card) is first
    retrain(weights, 2.0)
    second = cached_slide_model(card, trust_code=True)
    assert second is not first
    assert all(float(p.detach().flatten()[0]) == 2.0 for p in second.aggregator.parameters())


def test_a_slide_model_reloads_when_its_encoder_weights_change(tmp_path, backbones):
    from napari_gradcam.models.loading import load_model

    weights = tmp_path / "encoder.pt"
    state = load_model(f"{backbones}:encoder").module.state_dict()
    torch.save(state, weights)
    encoder = {"spec": f"{backbones}:encoder", "weights": weights.name}
    card = write_card(tmp_path / "slide_model.json", encoder=encoder)
    first = cached_slide_model(card, trust_code=True)
    torch.save({name: value + 1 for name, value in state.items()}, weights)
    os.utime(weights, ns=(1, 1))
    second = cached_slide_model(card, trust_code=True)
    assert second is not first
    torch.testing.assert_close(second.encoder.module[0].bias, state["0.bias"] + 1)
