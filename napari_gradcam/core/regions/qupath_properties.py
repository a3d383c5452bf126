"""QuPath's object properties in GeoJSON: classification, colours, measurements, metadata.

What QuPath writes (0.4 and later) and accepts:

* ``classification``: ``{"name": "Tumor", "color": [r, g, b]}``; a derived class as
  ``{"names": ["Tumor", "Positive"], "color": ...}``; or a plain string ``"Tumor: Positive"``.
  QuPath 0.2/0.3 wrote ``{"name": "Positive", "colorRGB": -65536, "parentClass": {...}}``
  (packed ARGB, a signed 32-bit integer); that is read, and written back as 0.4 writes it.
  QuPath refuses an object classification without a colour, so one is always written.
* ``measurements``: ``{name: number}``, where NaN and infinities are the strings ``"NaN"``,
  ``"Infinity"`` and ``"-Infinity"``; before 0.4 a list of ``{"name", "value"}``.
* ``metadata``: ``{key: text}``; QuPath 0.5 may write the key twice in one object.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

DERIVED_SEPARATOR = ": "
"""How a derived class is shown: ``"Tumor: Positive"`` (as QuPath shows it)."""
DEFAULT_COLOUR = (255, 255, 0)
NON_FINITE = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf}
NON_FINITE |= {"inf": math.inf, "-inf": -math.inf, "+infinity": math.inf, "+inf": math.inf}
KNOWN_PROPERTIES = frozenset(
    {
        "objectType",
        "object_type",
        "type",
        "name",
        "color",
        "classification",
        "isLocked",
        "measurements",
        "metadata",
    }
)
"""Properties read into :class:`QuPathFacts` fields; any other property is kept verbatim."""
OBJECT_TYPES = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathTileObject": "tile",
    "TMACoreObject": "tmaCore",
}
"""QuPath 0.2's type ids (stored as the feature id) and the object types they mean."""


@dataclass
class QuPathFacts:
    """What QuPath records with an object besides its shape, class and measurements.

    Attributes
    ----------
    name : str
        The object's name ("" for none).
    object_type : str
        ``annotation``, ``detection``, ``cell``, ``tile`` (or another type QuPath wrote).
    colour : tuple of int or None
        The object's own colour (not its class's).
    locked : bool
        Whether QuPath locks it against edits.
    metadata : dict of str to str
        QuPath's metadata (the review note is kept apart, in ``Annotation.note``).
    plane : dict or None
        ``{"c", "z", "t"}`` when not QuPath's default plane.
    ellipse : bool
        The polygon samples an ellipse (QuPath's ``isEllipse``).
    nucleus : dict or None
        A cell's ``nucleusGeometry``, as GeoJSON in QuPath's coordinates.
    extra : dict
        Every other property, kept as read and written back unchanged.
    """

    name: str = ""
    object_type: str = "annotation"
    colour: tuple[int, ...] | None = None
    locked: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    plane: dict[str, int] | None = None
    ellipse: bool = False
    nucleus: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """These facts as JSON text (for a table cell)."""
        return json.dumps(self.__dict__, allow_nan=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> QuPathFacts:
        """Facts from :meth:`to_json` text ("" or invalid text gives the defaults)."""
        try:
            values = json.loads(text) if text else {}
        except json.JSONDecodeError:
            return cls()
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if known.get("colour") is not None:
            known["colour"] = tuple(known["colour"])
        return cls(**known)


def merge_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json`` object hook: a key given twice with two objects merges them (later wins)."""
    merged: dict[str, Any] = {}
    for key, value in pairs:
        earlier = merged.get(key)
        if isinstance(earlier, dict) and isinstance(value, dict):
            merged[key] = {**earlier, **value}
        else:
            merged[key] = value
    return merged


def read_colour(raw: Any) -> tuple[int, ...] | None:
    """An ``[r, g, b]`` or ``[r, g, b, a]`` list, or QuPath's packed integer, as 0-255 ints."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        packed = raw & 0xFFFFFF
        return (packed >> 16) & 255, (packed >> 8) & 255, packed & 255
    numbers = isinstance(raw, list) and all(
        isinstance(c, int | float) and not isinstance(c, bool) for c in raw
    )
    if numbers and len(raw) in (3, 4):
        return tuple(int(min(max(round(c), 0), 255)) for c in raw)
    return None


def _legacy_names(raw: dict[str, Any]) -> list[str]:
    """QuPath 0.2/0.3's derived class: its ``parentClass`` chain, root first, then its name."""
    names, current = [], raw
    while isinstance(current, dict) and isinstance(current.get("name"), str):
        names.insert(0, current["name"].strip())
        current = current.get("parentClass")
    return names


def read_classification(raw: Any) -> tuple[str, tuple[int, ...] | None]:
    """The class as shown (``"A: B"`` for derived classes; "" for none) and its colour.

    Reads QuPath 0.4's ``names`` and ``color``, and QuPath 0.2/0.3's ``parentClass`` chain
    and ``colorRGB`` (a packed, signed ARGB integer).

    Raises
    ------
    ValueError
        When ``raw`` is neither a string nor an object with a name.
    """
    if raw is None:
        return "", None
    if isinstance(raw, str):
        return raw.strip(), None
    if not isinstance(raw, dict):
        raise ValueError(f"its classification {raw!r} is neither a name nor an object")
    names = raw.get("names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        label = DERIVED_SEPARATOR.join(n.strip() for n in names)
    elif isinstance(raw.get("name"), str):
        label = DERIVED_SEPARATOR.join(_legacy_names(raw))
    elif not raw:
        return "", None
    else:
        raise ValueError(f"its classification {raw!r} has no name")
    colour = read_colour(raw.get("color"))
    return label, colour if colour is not None else read_colour(raw.get("colorRGB"))


def write_classification(label: str, colour: tuple[int, ...] | None) -> dict[str, Any]:
    """QuPath's classification object: ``name`` or ``names`` (derived), always a colour."""
    names = [part.strip() for part in label.split(DERIVED_SEPARATOR)]
    key = {"names": names} if len(names) > 1 else {"name": label.strip()}
    return {**key, "color": list(colour if colour is not None else DEFAULT_COLOUR)}


def _parsed_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in NON_FINITE:
            return NON_FINITE[text]
        try:
            return float(text)
        except ValueError:
            return None
    return None


def read_measurements(raw: Any) -> tuple[dict[str, float], list[str]]:
    """Measurements as floats (NaN and infinities included) and one note per value left out."""
    if raw is None:
        return {}, []
    if isinstance(raw, list):
        pairs = [(m.get("name"), m.get("value")) if isinstance(m, dict) else (None, m) for m in raw]
    elif isinstance(raw, dict):
        pairs = list(raw.items())
    else:
        return {}, [f"measurements {raw!r} are neither an object nor a list; left out"]
    values, notes = {}, []
    for name, value in pairs:
        number = _parsed_number(value)
        if not isinstance(name, str) or number is None:
            notes.append(f"measurement {name!r} = {value!r} is not a number; left out")
        else:
            values[name] = number
    return values, notes


def write_number(value: float) -> float | int | str:
    """A measurement as QuPath writes it: a number, or "NaN", "Infinity", "-Infinity"."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def strict(value: Any) -> Any:
    """``value`` with every non-finite float, however deep, written as QuPath writes it."""
    if isinstance(value, float) and not math.isfinite(value):
        return write_number(value)
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strict(item) for item in value]
    return value


def read_metadata(raw: Any) -> tuple[dict[str, str], list[str]]:
    """QuPath's metadata as text (numbers and booleans as JSON text); notes on values left out."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [f"metadata {raw!r} is not an object; left out"]
    values, notes = {}, []
    for key, value in raw.items():
        if isinstance(value, str):
            values[key] = value
        elif isinstance(value, int | float | bool):
            values[key] = json.dumps(value)
        else:
            notes.append(f"metadata {key!r} is not text or a number; left out")
    return values, notes


def read_object_type(properties: dict[str, Any], feature_id: Any) -> str:
    """QuPath's object type: ``objectType`` (or its older spellings), else ``annotation``."""
    for key in ("objectType", "object_type", "type"):
        if isinstance(properties.get(key), str):
            return OBJECT_TYPES.get(properties[key], properties[key])
    return (
        OBJECT_TYPES.get(feature_id, "annotation") if isinstance(feature_id, str) else "annotation"
    )
