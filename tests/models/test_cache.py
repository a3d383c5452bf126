"""One model cache for the docks and the slide runner: same object, reload on change, bounded."""

from __future__ import annotations

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
    assert file_stamps("demo", None) == ()


def test_a_slide_model_is_loaded_once_and_again_when_its_card_changes(tmp_path) -> None:
    card = write_card(tmp_path / "slide_model.json", name="first")
    first = cached_slide_model(card)
    assert cached_slide_model(str(card)) is first and first.name == "first"
    stat = card.stat()
    write_card(card, name="second")
    os.utime(card, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = cached_slide_model(card)
    assert again is not first and again.name == "second"


def test_a_missing_slide_model_card_says_what_to_choose(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no slide-model card .*; choose a \.json card"):
        cached_slide_model(tmp_path / "missing.json")
