"""Model cards: typed fields, errors that name the field, and files that are not cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_gradcam.core.card import ModelCard


def card_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "card.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"classes": "tumour"}, "'classes' must be a list of names, e.g. ['tumour']"),
        ({"classes": ["a", 2]}, "'classes' must be a list of strings"),
        ({"classes": ["a", "a"]}, "'classes' names a class twice"),
        ({"input_size": "64"}, "'input_size' must be [height, width]"),
        ({"input_size": [-64, 64]}, "'input_size' must be an integer from 1"),
        ({"input_size": [64.5, 64]}, "'input_size' must be an integer"),
        ({"input_size": [True, 64]}, "'input_size' must be an integer"),
        ({"mpp": "0.5um"}, "'mpp' must be a positive number (e.g. 0.5 for 20x), got '0.5um'"),
        ({"mpp": -0.5}, "'mpp' must be a positive number"),
        ({"mpp": 0}, "'mpp' must be a positive number"),
        ({"mean": [0.5, 0.5]}, "mean and std need 3 values"),
        ({"std": [0.2, 0.2, "x"]}, "'std' must be a list of finite numbers"),
        ({"std": [0.2, 0.2, -0.1]}, "'std' values must be > 0"),
        ({"mean": [300, 0, 0]}, "'mean' [300.0, 0.0, 0.0] is on neither the 0-1 nor the 0-255"),
        ({"in_channels": "3"}, "'in_channels' must be an integer"),
        ({"name": 3}, "'name' must be a string"),
        ({"extra": []}, "'extra' must be an object"),
        ({"colour": "red"}, "unknown keys ['colour']"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_field(data, field):
    with pytest.raises(ValueError) as refused:
        ModelCard.from_dict(data, source="model card c.json")
    assert field in str(refused.value)


def test_a_nan_std_is_refused(tmp_path):
    path = card_file(tmp_path, '{"std": [NaN, 0.2, 0.2]}')
    with pytest.raises(ValueError, match=r"card\.json: 'std' must be a list of finite numbers"):
        ModelCard.from_json(path)


def test_mean_and_std_on_the_0_255_scale_are_converted_with_a_warning():
    data = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
    with pytest.warns(UserWarning, match="looks like 0-255 values") as warned:
        card = ModelCard.from_dict(data)
    assert [str(w.message).split(" ")[2] for w in warned] == ["'mean'", "'std'"]
    assert card.mean == pytest.approx((0.485, 0.456, 0.406), abs=1e-6)
    assert card.std == pytest.approx((0.229, 0.224, 0.225), abs=1e-6)


def test_a_valid_card_reads_as_typed_values():
    card = ModelCard.from_dict(
        {"classes": ["a", "b"], "input_size": [96, 64], "mpp": 1, "in_channels": 1}
    )
    assert card.classes == ("a", "b") and card.input_size == (96, 64)
    assert card.mpp == 1.0 and isinstance(card.mpp, float)
    assert card.mean == (0.5,) and card.std == (0.25,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"mpp": ' + "9" * 5000 + "}", "holds a value that cannot be read"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"classes": ', "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
    ],
)
def test_files_that_are_not_cards_get_advice_not_a_traceback(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        ModelCard.from_json(card_file(tmp_path, text))


def test_a_binary_file_is_not_a_card(tmp_path):
    path = tmp_path / "card.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not a JSON text file"):
        ModelCard.from_json(path)


def test_a_card_round_trips_through_json(tmp_path):
    card = ModelCard(name="m", classes=("a", "b"), input_size=(32, 32), mpp=0.5)
    card.to_json(tmp_path / "c.json")
    assert ModelCard.from_json(tmp_path / "c.json") == card
    assert json.loads((tmp_path / "c.json").read_text())["classes"] == ["a", "b"]
