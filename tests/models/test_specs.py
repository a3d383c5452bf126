"""A model's classes from its card alone, found where the loader looks for it."""

from pathlib import Path

import pytest

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.sources import model_sources
from napari_gradcam.models.specs import card_classes, card_location


def test_bundled_cards_are_where_the_loader_finds_them():
    from napari_gradcam.models.bundled import BUNDLED, DEMO_DIR

    for spec, (_factory, stem) in BUNDLED.items():
        assert card_location(spec) == DEMO_DIR / f"{stem}.json"
        assert card_location(spec).is_file()
    assert card_classes("demo", None) == ("background", "stroma", "nuclei-dense")


def test_a_card_beside_the_weights_or_the_model_file_is_read(tmp_path):
    ModelCard(name="m", classes=("a", "b")).to_json(tmp_path / "m.json")
    assert card_classes("net.py:make", str(tmp_path / "m.pt")) == ("a", "b")
    assert card_classes(str(tmp_path / "m.pt"), None) == ("a", "b")  # TorchScript beside it
    assert card_classes("net.py:make", None) == ()  # no weights: no card to read yet
    assert card_classes(str(tmp_path / "recipe.json"), None) == ()  # read when loaded


def test_a_broken_card_says_so(tmp_path):
    (tmp_path / "m.json").write_text('{"classes": ["a"], "colour": 1}')
    with pytest.raises(ValueError, match="unknown keys"):
        card_classes("net.py:make", str(tmp_path / "m.pt"))


def test_the_loader_the_sources_and_the_dock_find_the_same_card(tmp_path):
    weights = tmp_path / "w.pt"
    assert card_location("net.py:build", weights) == tmp_path / "w.json"
    assert card_location("net.py:build") is None and card_location("timm:resnet18") is None
    assert card_location(str(tmp_path / "m.pt")) == tmp_path / "m.json"
    assert card_location("demo", weights).name == "demo_net.json"  # none beside: its own
    ModelCard(name="mine").to_json(tmp_path / "w.json")
    assert card_location("demo", weights) == tmp_path / "w.json"
    assert tmp_path / "w.json" in model_sources("demo", weights).files
    assert card_location("demo", weights, "c.json") == Path("c.json")
