"""A model's classes from its card alone, found where the loader looks for it."""

import pytest

from napari_gradcam._napari.explain.card_classes import card_classes
from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.specs import card_location


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
