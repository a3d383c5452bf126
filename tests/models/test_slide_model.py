"""Slide-model cards: loading, and the clear refusals of cards whose parts do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from napari_gradcam.core.mil.aggregators import AttentionMIL
from napari_gradcam.models.slide_model import check_slide_mpp, load_slide_model
from tests.mil_cards import DEMO_ENCODER, write_card


def card_file(tmp_path: Path, **changes: object) -> Path:
    """A slide-model card over the demo encoder with an untrained ABMIL, with ``changes``."""
    return write_card(tmp_path / "slide_model.json", name="test", **changes)


def test_loads_a_card_whose_parts_fit(tmp_path: Path) -> None:
    model = load_slide_model(card_file(tmp_path), device="cpu")
    assert model.width == 64
    assert model.encoder.card.input_size == (64, 64)
    assert model.encoder.card.mpp == 0.5
    assert isinstance(model.aggregator, AttentionMIL)
    logits = model.logits(torch.randn(5, 64))
    assert logits.shape == (1, 2)


def test_aggregator_weights_are_read(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    trained = AttentionMIL(64, 2)
    save_file(trained.state_dict(), str(tmp_path / "agg.safetensors"))
    aggregator = json.loads(card_file(tmp_path).read_text())["aggregator"]
    aggregator["weights"] = "agg.safetensors"  # relative to the card
    model = load_slide_model(card_file(tmp_path, aggregator=aggregator), device="cpu")
    bag = torch.randn(7, 64)
    torch.testing.assert_close(model.logits(bag), trained(bag[None]))


def test_refuses_an_embedding_width_that_does_not_fit(tmp_path: Path) -> None:
    aggregator = json.loads(card_file(tmp_path).read_text())["aggregator"]
    aggregator["kwargs"]["in_dim"] = 32
    with pytest.raises(ValueError, match="64-wide embeddings"):
        load_slide_model(card_file(tmp_path, aggregator=aggregator), device="cpu")


def test_refuses_an_encoder_without_pooled_embeddings(tmp_path: Path) -> None:
    encoder = dict(DEMO_ENCODER, spec="torch.nn:Identity", weights=None)  # (1, 3, 64, 64) out
    with pytest.raises(ValueError, match=r"returns \(1, 3, 64, 64\).*not an embedding"):
        load_slide_model(card_file(tmp_path, encoder=encoder), device="cpu")


def test_refuses_a_missing_attention_module(tmp_path: Path) -> None:
    aggregator = json.loads(card_file(tmp_path).read_text())["aggregator"]
    aggregator["attention_module"] = "attn"
    with pytest.raises(ValueError, match=r"'attn'.*its modules: embed"):
        load_slide_model(card_file(tmp_path, aggregator=aggregator), device="cpu")


def test_refuses_classes_the_aggregator_does_not_predict(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must return \(1, 3\) logits"):
        load_slide_model(card_file(tmp_path, classes=["a", "b", "c"]), device="cpu")


def test_refuses_a_card_without_a_field(tmp_path: Path) -> None:
    path = card_file(tmp_path)
    data = json.loads(path.read_text())
    del data["tile_size"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no 'tile_size'"):
        load_slide_model(path, device="cpu")


def test_refuses_an_mpp_the_slide_cannot_give(tmp_path: Path) -> None:
    model = load_slide_model(card_file(tmp_path), device="cpu")
    check_slide_mpp(model.mpp, 0.25)  # finer slides are read at a coarser level
    with pytest.raises(ValueError, match="coarser"):
        check_slide_mpp(model.mpp, 1.0)
    with pytest.raises(ValueError, match="--slide-mpp"):
        check_slide_mpp(model.mpp, None)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mpp": "0.5um"}, "'mpp' must be a positive number"),
        ({"mpp": -0.5}, "'mpp' must be a positive number"),
        ({"tile_size": "64"}, "'tile_size' must be an integer from 8"),
        ({"classes": "pos"}, "'classes' must be a list of names"),
        ({"encoder": "demo"}, "'encoder' must be an object"),
        ({"colour": 1}, "unknown keys ['colour']"),
    ],
)
def test_refuses_wrong_values_naming_the_field(tmp_path: Path, changes, field) -> None:
    with pytest.raises(ValueError) as refused:
        load_slide_model(card_file(tmp_path, **changes), device="cpu")
    assert field in str(refused.value)


def test_refuses_a_string_where_a_flag_belongs(tmp_path: Path) -> None:
    aggregator = json.loads(card_file(tmp_path).read_text())["aggregator"]
    aggregator["uses_coords"] = "false"  # would be truthy if read with bool()
    with pytest.raises(ValueError, match=r"'aggregator\.uses_coords' must be true or false"):
        load_slide_model(card_file(tmp_path, aggregator=aggregator), device="cpu")
