"""Typed records read from the JSON files a user gives: model cards, recipes, slide-model cards.

A record is a frozen dataclass whose fields name their reader: ``json_field(reader, default)``.
:func:`read_record` reads every card the same way. Keys are strict (an unknown key is refused,
naming the allowed ones); a field without a default is required, and ``null`` stands for the
default of one that has one; a section is a nested record (``section(Record)``); a record's
``ALIASES`` maps an old key name to its field, so files written before a rename still read.
A reader takes ``(value, field, source)``: the value from ``json.loads``, the field's dotted
path and the file (``"model card scan.json"``), and raises a ``ValueError`` naming both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, fields
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, TypeVar

MAX_SIDE = 16384
"""The largest input or tile side in pixels a card may declare (a model input, not a slide)."""
MAX_WIDTH = 1 << 16
"""The largest layer width a recipe may declare."""

Reader = Callable[[object, str, str], Any]
"""``(value, field, source) -> typed value``; raises ``ValueError`` naming ``field``."""
Record = TypeVar("Record")


def json_field(read: Reader, default: Any = MISSING, *, hint: str = "") -> Any:
    """A dataclass field read from JSON by ``read``; required when it has no ``default``.

    ``hint`` ends the message of a missing field (``" (e.g. 'timm:NAME')"``). A dict default
    is copied for each record.
    """
    metadata = {"read": read, "hint": hint}
    if isinstance(default, dict):
        return dataclass_field(default_factory=default.copy, metadata=metadata)
    return dataclass_field(default=default, metadata=metadata)


def read_record(
    cls: type[Record], data: object, source: str, prefix: str = "", **given: Any
) -> Record:
    """``cls`` built from the JSON object ``data`` (see the module docstring).

    ``prefix`` is the section's path (``"aggregator."``); ``given`` sets the fields that are not
    read from the file (a card's own path).
    """
    return cls(**read_fields(cls, data, source, prefix), **given)


def read_fields(cls: type, data: object, source: str, prefix: str = "") -> dict[str, Any]:
    """The typed values of the keys ``data`` holds, by field name (defaults left to ``cls``)."""
    if prefix:
        object_field(data, prefix.rstrip("."), source)
    elif not isinstance(data, dict):
        raise ValueError(f"{source} must be a JSON object, got {type(data).__name__}")
    readers: dict[str, Field] = {f.name: f for f in fields(cls) if "read" in f.metadata}
    required = {
        name
        for name, spec in readers.items()
        if spec.default is MISSING and spec.default_factory is MISSING
    }
    aliases: dict[str, str] = getattr(cls, "ALIASES", {})
    unknown = sorted(prefix + key for key in data if aliases.get(key, key) not in readers)
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown}; valid keys are {sorted(readers)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(key, key)
        if name != key and name in data:
            raise ValueError(
                f"{source}: {prefix + key!r} is the old name of {prefix + name!r}; give only "
                f"{prefix + name!r}"
            )
        if value is not None or name in required:
            values[name] = readers[name].metadata["read"](value, prefix + name, source)
    missing = sorted(required - set(values))
    if missing:
        hint = readers[missing[0]].metadata["hint"]
        raise ValueError(f"{source} has no {prefix + missing[0]!r}{hint}")
    return values


def section(cls: type) -> Reader:
    """The reader of a nested record: a JSON object whose fields are named ``section.key``."""
    return lambda value, name, source: read_record(cls, value, source, name + ".")


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


def positive_number(example: str) -> Reader:
    """The reader of a finite number > 0; ``example`` shows the right form, e.g. ``"0.5"``."""

    def read(value: object, field: str, source: str) -> float:
        if not _finite(value) or value <= 0:
            raise ValueError(
                f"{source}: {field!r} must be a positive number (e.g. {example}), "
                f"got {_name(value)}"
            )
        return float(value)

    return read


def whole_number(most: int, least: int = 1) -> Reader:
    """The reader of an integer from ``least`` to ``most``."""

    def read(value: object, field: str, source: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ValueError(
                f"{source}: {field!r} must be an integer from {least} to {most}, got {_name(value)}"
            )
        return value

    return read


MPP = positive_number("0.5 for 20x")
"""The reader of microns per pixel."""


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


def choice_field(options: Sequence[str]) -> Reader:
    """The reader of one of ``options``."""

    def read(value: object, field: str, source: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(
                f"{source}: {field!r} must be one of {list(options)}, got {_name(value)}"
            )
        return value

    return read
