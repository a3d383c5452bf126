"""Typed fields of the JSON files a user gives (model cards, recipes, slide-model cards).

Each reader takes a value straight from ``json.loads`` and returns it typed, or raises a
``ValueError`` that names the file and the field and says what to write instead. ``source``
names the file in the messages (``"model card scan.json"``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MAX_SIDE = 16384
"""The largest input or tile side in pixels a card may declare (a model input, not a slide)."""
MAX_WIDTH = 1 << 16
"""The largest layer width a recipe may declare."""


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the file in the errors ("model card", ...).

    Raises
    ------
    ValueError
        When the file is not UTF-8 JSON, is nested too deeply, holds a number Python refuses to
        convert (thousands of digits), or does not hold an object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not a JSON text file (not UTF-8): {err}") from err
    except RecursionError as err:
        raise ValueError(
            f"{what} {path} is nested too deeply to be a {what}; check that it is the right file"
        ) from err
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise ValueError(f"{what} {path} holds a value that cannot be read: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object")
    return data


def _finite(value: object) -> bool:
    """Whether ``value`` is a JSON number that is a finite float (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer too large for a float
        return False


def _name(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "an integer of thousands of digits"
    return text if len(text) <= 60 else text[:57] + "..."


def text_field(value: object, field: str, source: str) -> str:
    """A string."""
    if not isinstance(value, str):
        raise ValueError(f"{source}: {field!r} must be a string, got {_name(value)}")
    return value


def flag_field(value: object, field: str, source: str) -> bool:
    """A JSON ``true`` or ``false`` (never a string such as ``"false"``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{source}: {field!r} must be true or false, got {_name(value)}")
    return value


def object_field(value: object, field: str, source: str) -> dict[str, Any]:
    """A JSON object."""
    if not isinstance(value, dict):
        raise ValueError(f"{source}: {field!r} must be an object ({{...}}), got {_name(value)}")
    return value


def positive_number(value: object, field: str, source: str, example: str) -> float:
    """A finite number > 0; ``example`` shows the right form, e.g. ``"0.5"``."""
    if not _finite(value) or value <= 0:
        raise ValueError(
            f"{source}: {field!r} must be a positive number (e.g. {example}), got {_name(value)}"
        )
    return float(value)


def positive_int(value: object, field: str, source: str, *, least: int = 1, most: int) -> int:
    """An integer between ``least`` and ``most``."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValueError(
            f"{source}: {field!r} must be an integer from {least} to {most}, got {_name(value)}"
        )
    return value


def names_field(value: object, field: str, source: str) -> tuple[str, ...]:
    """A list of distinct strings (a single string is refused, never split into letters)."""
    if isinstance(value, str):
        raise ValueError(
            f"{source}: {field!r} must be a list of names, e.g. [{value!r}], not a string"
        )
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"{source}: {field!r} must be a list of strings, got {_name(value)}")
    if len(set(value)) != len(value):
        raise ValueError(f"{source}: {field!r} names a class twice: {_name(value)}")
    return tuple(value)


def numbers_field(value: object, field: str, source: str) -> tuple[float, ...]:
    """A non-empty list of finite numbers."""
    if not isinstance(value, list) or not value or not all(_finite(v) for v in value):
        raise ValueError(
            f"{source}: {field!r} must be a list of finite numbers (one per channel), "
            f"got {_name(value)}"
        )
    return tuple(float(v) for v in value)


def optional_text(section: dict[str, Any], key: str, prefix: str, source: str) -> str | None:
    """``section[key]`` as a string, or ``None`` when absent; ``prefix`` is the section's path."""
    value = section.get(key)
    return None if value is None else text_field(value, prefix + key, source)


def refuse_unknown(
    section: dict[str, Any], known: frozenset[str], prefix: str, source: str
) -> None:
    """Refuse keys of ``section`` not in ``known`` (a typo would otherwise be ignored)."""
    unknown = sorted(prefix + key for key in set(section) - known)
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown}; valid: {sorted(known)}")
