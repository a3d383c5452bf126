"""Any JSON value in any field of a card, recipe or slide-model card: a card or a named error.

The readers must never fail with another exception type (TypeError, KeyError, AttributeError,
OverflowError, ...): each wrong value gets a ``ValueError`` (or ``FileNotFoundError`` for a
file it names that is missing, or ``UntrustedCodeError`` for code it names) whose message
names the field.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.code_trust import UntrustedCodeError, check_code_trust
from napari_gradcam.models.probe import Recipe
from napari_gradcam.models.slide_model import SlideCard
from tests.mil_cards import write_card

NAMED_ERRORS = (ValueError, FileNotFoundError, UntrustedCodeError)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["x:y", "os:system", "helper.py:build", "timm:resnet18", "a.py", "0.5um"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["import", "a", "spec"]), children, max_size=3)
    ),
    max_leaves=8,
)

CARD = {
    "name": "m",
    "classes": ["a", "b"],
    "input_size": [32, 32],
    "in_channels": 3,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.2, 0.2, 0.2],
    "mpp": 0.5,
    "default_layer": "conv",
    "description": "",
    "extra": {},
}
RECIPE_FIELDS = [
    ("backbone", "spec"),
    ("backbone", "kwargs"),
    ("backbone", "weights"),
    ("backbone", "pool"),
    ("head", "layers"),
    ("head", "activation"),
    ("head", "weights"),
    ("card", None),
    ("backbone", None),
    ("head", None),
]
SLIDE_FIELDS = [
    ("name", None),
    ("classes", None),
    ("tile_size", None),
    ("mpp", None),
    ("encoder", None),
    ("encoder", "spec"),
    ("encoder", "weights"),
    ("encoder", "card"),
    ("aggregator", None),
    ("aggregator", "spec"),
    ("aggregator", "kwargs"),
    ("aggregator", "attention_module"),
    ("aggregator", "branch_per_class"),
    ("aggregator", "uses_coords"),
]


@pytest.fixture(autouse=True)
def state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No trusted cards: the user's own state folder is never read."""
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(tmp_path))


def _replace(data: dict[str, Any], section: str, key: str | None, value: Any) -> str:
    """Put ``value`` at ``section`` (or ``section.key``); return the field's dotted name."""
    if key is None:
        data[section] = value
        return section
    data[section][key] = value
    return f"{section}.{key}"


@FUZZ
@given(field=st.sampled_from(sorted(CARD)), value=JSON_VALUES)
def test_model_card_fields(field: str, value: Any) -> None:
    data = {**CARD, field: value}
    try:
        ModelCard.from_dict(data, source="fuzzed card")
    except ValueError as error:  # any other type fails the test as it is raised
        named = "mean and std" if field in ("mean", "std", "in_channels") else field
        assert field in str(error) or named in str(error), str(error)


@FUZZ
@given(where=st.sampled_from(RECIPE_FIELDS), value=JSON_VALUES)
def test_recipe_fields(where: tuple[str, str | None], value: Any) -> None:
    recipe = {
        "card": {"name": "probe"},
        "backbone": {"spec": "timm:resnet18", "kwargs": {}, "weights": "w.safetensors"},
        "head": {"layers": [512, 2], "activation": "gelu"},
    }
    field = _replace(recipe, *where, value)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.json"
        path.write_text(json.dumps(recipe))
        try:
            check_code_trust(Recipe.read(path).code_request(), trust_code=False)
        except NAMED_ERRORS as error:  # any other type fails the test as it is raised
            assert field in str(error), f"{field!r} not named in: {error}"


@FUZZ
@given(where=st.sampled_from(SLIDE_FIELDS), value=JSON_VALUES)
def test_slide_model_card_fields(where: tuple[str, str | None], value: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write_card(Path(folder) / "card.json")
        data = json.loads(path.read_text())
        field = _replace(data, *where, value)
        path.write_text(json.dumps(data))
        try:
            check_code_trust(SlideCard.read(path).code_request(), trust_code=False)
        except NAMED_ERRORS as error:  # any other type fails the test as it is raised
            assert field in str(error), f"{field!r} not named in: {error}"
