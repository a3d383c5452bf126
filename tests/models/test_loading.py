"""Model specs: factories, weights-only loading, TorchScript, opt-in pickle, model cards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.models.loading import check_class_count
from tests.architectures import build
from tests.segmenters import TinySegmenter

USER_MODEL = """
from torch import nn

def make():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    )

def broken():
    raise RuntimeError("no GPU here")

def not_a_model():
    return 42
"""


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(USER_MODEL)
    return path


@pytest.fixture
def user_weights(user_file: Path, tmp_path: Path) -> Path:
    model = ng.load_model(f"{user_file}:make").module
    with torch.no_grad():
        model[0].weight.fill_(0.5)
    path = tmp_path / "my_model.pt"
    torch.save(model.state_dict(), path)
    return path


def test_file_factory_with_weights_and_card_beside(user_file, user_weights, tmp_path) -> None:
    card = {"name": "mine", "classes": ["benign", "tumour"], "input_size": [16, 16]}
    (tmp_path / "my_model.json").write_text(json.dumps(card))
    loaded = ng.load_model(f"{user_file}:make", weights=user_weights, device="cpu")
    assert loaded.kind == "factory"
    assert loaded.card.classes == ("benign", "tumour")
    assert loaded.card.input_size == (16, 16)
    assert torch.all(loaded.module[0].weight == 0.5)
    assert not loaded.module.training
    explanation = ng.explain(loaded, np.random.default_rng(0).random((16, 16, 3)), target="tumour")
    assert explanation.target_names == ("tumour",)


def test_module_factory_and_default_card() -> None:
    loaded = ng.load_model("tests.architectures:ResNetLike")
    assert isinstance(loaded.module, torch.nn.Module)
    assert loaded.card.input_size is None
    assert loaded.card.class_name(3) == "3"


def test_weights_inside_a_checkpoint_dict(user_file, user_weights, tmp_path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": torch.load(user_weights, weights_only=True)}, checkpoint)
    loaded = ng.load_model(f"{user_file}:make", weights=checkpoint)
    assert torch.all(loaded.module[0].weight == 0.5)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("broken", "failed: no GPU here"),
        ("not_a_model", "returned int, not a torch.nn.Module"),
        ("missing", "has no function 'missing'"),
    ],
)
def test_bad_factories(user_file, factory: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ng.load_model(f"{user_file}:{factory}")


def test_unknown_module_and_missing_file() -> None:
    with pytest.raises(ValueError, match=r"cannot import 'no_such_pkg\.models'"):
        ng.load_model("no_such_pkg.models:make")
    with pytest.raises(FileNotFoundError, match="no model file"):
        ng.load_model("missing_model.pt")


def test_weights_that_do_not_fit(user_file, tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save(build("resnet").state_dict(), path)
    with pytest.raises(ValueError, match="do not fit the model"):
        ng.load_model(f"{user_file}:make", weights=path)


def test_torchscript_loads_and_grad_cam_explains_why_not(tmp_path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(build("resnet").eval()), path)
    loaded = ng.load_model(str(path))
    assert loaded.kind == "torchscript"
    assert loaded.module(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match="TorchScript model: its layers cannot be hooked"):
        ng.explain(loaded, torch.randn(1, 3, 32, 32))


def test_pickled_module_needs_explicit_permission(tmp_path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(build("resnet"), path)
    with pytest.raises(ValueError, match="unpickling runs code"):
        ng.load_model(str(path))
    loaded = ng.load_model(str(path), allow_pickle=True)
    assert loaded.kind == "pickle"
    assert ng.explain(loaded, torch.randn(1, 3, 32, 32)).layer == "layer3"


def test_weights_file_given_as_the_model(user_weights) -> None:
    with pytest.raises(ValueError, match="holds weights only"):
        ng.load_model(str(user_weights))


def test_garbage_file(tmp_path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a PyTorch model file"):
        ng.load_model(str(path))


def test_bad_cards(tmp_path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{classes: }")
    with pytest.raises(ValueError, match="not valid JSON"):
        ng.ModelCard.from_json(bad_json)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"clases": ["a"]}))
    with pytest.raises(ValueError, match=r"unknown keys \['clases'\]"):
        ng.ModelCard.from_json(unknown)
    with pytest.raises(ValueError, match="mean and std need 3 values"):
        ng.ModelCard(mean=(0.5,), std=(0.5,))


def test_card_round_trip(tmp_path) -> None:
    card = ng.ModelCard(name="x", classes=("a", "b"), input_size=(64, 64), mpp=0.5)
    card.to_json(tmp_path / "card.json")
    assert ng.ModelCard.from_json(tmp_path / "card.json") == card


def test_class_names_must_match_the_logits(user_file, tmp_path) -> None:
    three = tmp_path / "three.json"
    three.write_text(json.dumps({"classes": ["a", "b", "c"], "input_size": [16, 16]}))
    with pytest.raises(ValueError, match=r"'classes' names 3 classes.*returns 2 logits"):
        ng.load_model(f"{user_file}:make", card=three)
    one_word = tmp_path / "one_word.json"
    one_word.write_text(json.dumps({"classes": "tumour"}))
    with pytest.raises(ValueError, match=r"'classes' must be a list of names"):
        ng.load_model(f"{user_file}:make", card=one_word)


def test_weights_given_with_a_bundled_model_are_loaded_into_it(tmp_path) -> None:
    bundled = ng.load_model("demo", device="cpu")
    state = {
        key: value + 0.01 if value.is_floating_point() else value
        for key, value in bundled.module.state_dict().items()
    }
    torch.save(state, tmp_path / "retrained.pt")
    retrained = ng.load_model("demo", weights=tmp_path / "retrained.pt", device="cpu")
    assert retrained.spec == "demo" and retrained.card == bundled.card
    for key, value in retrained.module.state_dict().items():
        torch.testing.assert_close(value, state[key])
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"do not fit the model: missing"):
        ng.load_model("demo", weights=tmp_path / "other.pt")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"just some text\n", "not a PyTorch weights file"),
        ("model.py", b"def build():\n    pass\n", "it is Python source: give it as the model"),
        ("empty.pt", b"", "is empty"),
    ],
)
def test_a_file_that_is_not_weights_gets_advice(user_file, tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        ng.load_model(f"{user_file}:make", weights=tmp_path / name)


@pytest.mark.parametrize(
    ("output", "classes", "message"),
    [
        (
            "dense",
            ("a", "b"),
            r"'classes' names 2 classes \['a', 'b'\], but the model returns 3 logit maps",
        ),
        (
            "classes",
            ("a", "b", "c"),
            r"returns \(1, 3, 32, 32\), not \(N, classes\) logits; set the card's 'output'",
        ),
    ],
)
def test_a_dense_card_s_classes_are_checked_against_its_logit_maps(output, classes, message):
    card = ng.ModelCard(classes=classes, output=output, input_size=(32, 32))
    check_class_count(TinySegmenter(), ng.ModelCard(classes=("a", "b", "c"), output="dense"))
    with pytest.raises(ValueError, match=message):
        check_class_count(TinySegmenter(), card)
