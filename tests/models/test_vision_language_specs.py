"""Vision-language specs without their libraries: the card's ``text`` section, where cards and
sources are found, and the refusals that come before open_clip or transformers is imported.

The models themselves are tested in ``.venv-timm``: ``test_vision_language_models.py``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from napari_gradcam.core.card import ModelCard, TextCard
from napari_gradcam.models.loading import load_model
from napari_gradcam.models.sources import model_sources
from napari_gradcam.models.specs import card_location, is_vision_language_spec


def test_text_section_reads_tokenizer_and_template() -> None:
    card = ModelCard.from_dict(
        {"text": {"tokenizer": "open_clip:ViT-B-32", "template": "an H&E image of {}."}}
    )
    assert card.text == TextCard(tokenizer="open_clip:ViT-B-32", template="an H&E image of {}.")
    assert ModelCard.from_dict({}).text is None
    assert ModelCard.from_dict({"text": {}}).text == TextCard(tokenizer=None, template="{}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            {"tower": "text"},
            "unknown keys ['text.tower']; valid keys are ['template', 'tokenizer']",
        ),
        ({"template": "an image"}, "'text.template' must hold one '{}' where the prompt goes"),
        ({"template": "{} of {}"}, "'text.template' must hold one '{}'"),
        ({"template": "{name}"}, "'text.template' must hold one '{}'"),
        ({"template": "{"}, "'text.template' '{' is not a template"),
        ({"tokenizer": 3}, "'text.tokenizer' must be a string, got 3"),
        ("open_clip:ViT-B-32", "'text' must be an object"),
    ],
)
def test_text_section_refuses_what_it_cannot_use(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("{", r"\{")):
        ModelCard.from_dict({"text": text})


def test_a_tokenizer_folder_is_read_beside_the_card(tmp_path: Path) -> None:
    path = tmp_path / "cards" / "plip.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"text": {"tokenizer": "../plip/tokenizer"}}))
    card = ModelCard.from_json(path)
    assert Path(card.text.tokenizer) == path.parent / "../plip/tokenizer"
    path.write_text(json.dumps({"text": {"tokenizer": "open_clip:ViT-B-32"}}))
    assert ModelCard.from_json(path).text.tokenizer == "open_clip:ViT-B-32"
    card.to_json(tmp_path / "again.json")
    assert ModelCard.from_json(tmp_path / "again.json").text == card.text


def test_specs_are_told_apart_from_factories_and_files(tmp_path: Path) -> None:
    assert is_vision_language_spec("open_clip:RN50")
    assert is_vision_language_spec("hf:models/plip")
    assert not is_vision_language_spec("open_clip:") and not is_vision_language_spec("timm:x")
    assert card_location("open_clip:ViT-B-32") is None
    assert card_location("hf:models/plip") is None
    weights = tmp_path / "quilt.safetensors"
    assert card_location("open_clip:ViT-B-32", weights) == tmp_path / "quilt.json"


def test_sources_name_the_library_and_the_config_files(tmp_path: Path) -> None:
    found = model_sources("open_clip:ViT-B-32", tmp_path / "w.pt")
    assert found.packages == ("open_clip",)
    assert tmp_path / "w.pt" in found.files and tmp_path / "w.json" in found.files
    (tmp_path / "plip").mkdir()
    found = model_sources(f"hf:{tmp_path / 'plip'}")
    assert found.packages == ("transformers",)
    assert found.files == (
        tmp_path / "plip" / "config.json",
        tmp_path / "plip" / "preprocessor_config.json",
    )


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip here")
def test_open_clip_missing_says_what_to_install() -> None:
    with pytest.raises(ValueError, match="pip install open_clip_torch"):
        load_model("open_clip:ViT-B-32")


def test_hf_spec_refuses_a_missing_or_foreign_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give 'hf:FOLDER', the folder holding the model's"):
        load_model(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", "auto_map": {}}))
    with pytest.raises(ValueError, match=r"'model_type' is 'vit'; 'hf:' loads the vision-lang"):
        load_model(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"Hugging Face config .* is not valid JSON"):
        load_model(f"hf:{tmp_path / 'config.json'}")


@pytest.mark.skipif(importlib.util.find_spec("transformers") is not None, reason="transformers")
def test_transformers_missing_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ValueError, match="pip install transformers"):
        load_model(f"hf:{tmp_path}")
