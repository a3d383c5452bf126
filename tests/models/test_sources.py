"""What a model is built from: every file the loader reads, for every kind of spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_gradcam.models.bundled import DEMO_DIR
from napari_gradcam.models.sources import ModelSources, model_sources, slide_model_sources


def names(sources: ModelSources) -> list[str]:
    return [path.name for path in sources.files]


def test_each_kind_of_spec_names_its_files_and_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative file.py is read from the working folder
    demo = model_sources("demo")
    assert demo.files == (DEMO_DIR / "demo_net.pt", DEMO_DIR / "demo_net.json")
    assert demo.packages == ("napari_gradcam",)
    assert model_sources("timm:resnet18", "w.safetensors") == ModelSources(
        (tmp_path / "w.safetensors", tmp_path / "w.json"), ("timm",)
    )
    assert names(model_sources("net.py:build", "w.pt", "card.json")) == [
        "net.py",
        "w.pt",
        "card.json",
    ]
    assert names(model_sources("scripted.pt")) == ["scripted.pt", "scripted.json"]
    (tmp_path / "recipe.json").write_text(
        json.dumps(
            {
                "card": "probe.json",
                "backbone": {"spec": "net.py:backbone", "weights": "backbone.pt"},
                "head": {"layers": [4, 2], "weights": "head.safetensors"},
            }
        )
    )
    assert names(model_sources("recipe.json")) == [
        "recipe.json",
        "net.py",
        "backbone.pt",
        "head.safetensors",
        "probe.json",
    ]


def test_a_slide_model_names_its_encoder_and_aggregator_files(tmp_path: Path) -> None:
    card = tmp_path / "slide.json"
    card.write_text(
        json.dumps(
            {
                "classes": ["a", "b"],
                "tile_size": 64,
                "encoder": {"spec": "timm:vit_small", "weights": "enc.pt", "card": "enc.json"},
                "aggregator": {"spec": f"{tmp_path}/agg.py:build", "weights": "agg.pt"},
            }
        )
    )
    sources = slide_model_sources(card)
    assert names(sources) == ["slide.json", "enc.pt", "enc.json", "agg.py", "agg.pt"]
    assert sources.packages == ("timm",)


def test_the_content_digest_follows_content_not_place(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "net.py").write_text("def build(): ...\n")
    first, moved = (model_sources(f"{tmp_path / f}/net.py:build") for f in ("a", "b"))
    assert first.content_digest() == moved.content_digest()
    (tmp_path / "b" / "net.py").write_text("def build(): return None\n")
    assert first.content_digest() != moved.content_digest()
