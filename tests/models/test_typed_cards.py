"""One reader for every card: strict keys, typed sections, old key names, seeded timm cards."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.json_fields import json_field, read_record, section, text_field
from napari_gradcam.models import timm_models
from napari_gradcam.models.loading import load_model
from napari_gradcam.models.slide_model import SlideCard, load_slide_model
from tests.mil_cards import write_card


@dataclass(frozen=True)
class Inner:
    ALIASES: ClassVar[dict[str, str]] = {"old": "new"}

    new: str = json_field(text_field, hint=" (e.g. 'x')")


@dataclass(frozen=True)
class Outer:
    inner: Inner = json_field(section(Inner))
    note: str = json_field(text_field, "")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"new": "a"}, "colour": 1}, "f.json: unknown keys ['colour']; valid keys are"),
        ({"inner": {"new": "a", "x": 1}}, "unknown keys ['inner.x']; valid keys are ['new']"),
        ({"inner": {"new": 3}}, "f.json: 'inner.new' must be a string, got 3"),
        ({"inner": {}}, "f.json has no 'inner.new' (e.g. 'x')"),
        ({"inner": []}, "'inner' must be an object"),
        ({"inner": {"old": "a", "new": "b"}}, "'inner.old' is the old name of 'inner.new'"),
        ({"inner": {"new": "b", "old": "a"}}, "'inner.old' is the old name of 'inner.new'"),
    ],
)
def test_the_reader_names_the_field_path(data, message):
    with pytest.raises(ValueError) as refused:
        read_record(Outer, data, "f.json")
    assert message in str(refused.value)


def test_null_stands_for_the_default_and_an_old_key_still_reads():
    assert read_record(Outer, {"inner": {"old": "a"}, "note": None}, "f") == Outer(Inner("a"))


def test_a_slide_card_with_the_old_factory_key_loads_and_is_written_back_with_spec(tmp_path):
    aggregator = json.loads(write_card(tmp_path / "new.json").read_text())["aggregator"]
    aggregator["factory"] = aggregator.pop("spec")
    card = write_card(tmp_path / "old.json", aggregator=aggregator)
    assert SlideCard.read(card).aggregator.spec.endswith("aggregators:build_attention_mil")
    model = load_slide_model(card, device="cpu")
    assert "factory" not in model.source["aggregator"]
    assert model.source["aggregator"]["spec"] == aggregator["factory"]
    assert model.name == "old" and model.has_attention


def test_an_inline_recipe_card_names_its_path_in_the_recipe(tmp_path):
    recipe = {"card": {"mpp": "x"}, "backbone": {"spec": "timm:a"}, "head": {"layers": [2, 2]}}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    with pytest.raises(ValueError, match=r"r\.json: 'card\.mpp' must be a positive number"):
        load_model(str(tmp_path / "r.json"))


class PretrainedNet(nn.Module):
    """A module exposing a timm ``pretrained_cfg`` (mean 0.5, 299 x 299), as timm builds one."""

    pretrained_cfg: ClassVar[dict[str, tuple]] = {
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "input_size": (3, 299, 299),
    }

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture
def fake_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(is_model=lambda name: True, create_model=lambda *a, **k: PretrainedNet())
    monkeypatch.setattr(timm_models, "_import_timm", lambda: fake)


@pytest.mark.usefixtures("fake_timm")
def test_a_timm_model_without_a_card_takes_its_pretrained_config(tmp_path):
    card = load_model("timm:fake", device="cpu").card
    assert card.mean == card.std == (0.5, 0.5, 0.5) and card.input_size == (299, 299)
    assert card.name == "timm:fake"
    (tmp_path / "own.json").write_text('{"mean": [0.4, 0.4, 0.4], "classes": ["a", "b"]}')
    given = load_model("timm:fake", card=tmp_path / "own.json", device="cpu").card
    assert given.mean == (0.4, 0.4, 0.4) and given.std == (0.5, 0.5, 0.5)  # field by field
    assert given.input_size == (299, 299) and given.classes == ("a", "b")


def test_a_card_with_other_channels_keeps_its_own_normalisation(tmp_path):
    (tmp_path / "grey.json").write_text('{"in_channels": 1}')
    seed = timm_models.pretrained_card_fields(PretrainedNet())
    card = ModelCard.from_json(tmp_path / "grey.json", seed)
    assert card.mean == (0.5,) and card.std == (0.25,) and card.input_size == (299, 299)


@pytest.mark.timm
def test_a_real_timm_model_seeds_mean_std_and_size_offline(tmp_path):
    pytest.importorskip("timm", reason="runs in .venv-timm (make test)")
    card = load_model("timm:inception_v3", device="cpu").card
    assert card.mean == card.std == (0.5, 0.5, 0.5) and card.input_size == (299, 299)
    (tmp_path / "card.json").write_text('{"std": [0.2, 0.2, 0.2], "input_size": [320, 320]}')
    given = load_model("timm:inception_v3", card=tmp_path / "card.json", device="cpu").card
    assert given.mean == (0.5, 0.5, 0.5) and given.std == (0.2, 0.2, 0.2)
    assert given.input_size == (320, 320)
