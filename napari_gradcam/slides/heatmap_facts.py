"""Read a ``.heatmap.zarr`` store's placement and provenance, checked before any layer is made.

A store written by ``napari-gradcam slide`` (or ``--mil``) carries, in its ``napari_gradcam``
attribute, what places and colours the map: ``slide`` and ``method`` (the layer's name),
``levels`` (the shape of each stored level), ``placement`` (scale and translate in
``micrometer`` and/or ``pixel``) and ``contrast_limits``. A store edited by hand or written by
another tool may lack any of them or hold something else; each is checked here and a problem
is named with what to do, instead of a ``KeyError`` (or ``"0,1"`` split into characters).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NoReturn

from napari_gradcam.slides.outputs import HEATMAP_KEY

REWRITE_ADVICE = (
    "write it again with `napari-gradcam slide SLIDE --out DIR --overwrite`, or fix the "
    "attribute in its zarr.json"
)
"""What to do with a store whose facts are missing or malformed."""


class HeatmapStoreError(ValueError):
    """A heatmap store lacks an attribute, or holds one of the wrong kind."""


def read_heatmap_facts(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Open the store at ``path``; return its zarr group and its checked facts.

    Raises
    ------
    HeatmapStoreError
        Naming the missing or malformed attribute (or level array) and what to do.
    """
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(path, mode="r")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HeatmapStoreError(f"cannot open {path} as a zarr store ({err})") from err
    facts = group.attrs.get(HEATMAP_KEY)
    if not isinstance(facts, dict):
        _fail(path, HEATMAP_KEY, f"is {_kind(facts)}, not a mapping")
    facts = dict(facts)
    for key in ("slide", "method"):
        if not isinstance(facts.get(key), str):
            _fail(path, key, f"is {_kind(facts.get(key))}, not text")
    facts["contrast_limits"] = _limits(path, facts.get("contrast_limits"))
    _placement(path, facts.get("placement"))
    _levels(path, group, facts.get("levels"))
    if not isinstance(facts.get("signed", False), bool):
        _fail(path, "signed", f"is {_kind(facts['signed'])}, not true or false")
    return group, facts


def placement_unit(facts: dict[str, Any]) -> str:
    """``"micrometer"`` when the store is placed in µm, else ``"pixel"``."""
    return "micrometer" if "micrometer" in facts["placement"] else "pixel"


def _limits(path: Path, value: Any) -> list[float]:
    numbers = _numbers(value, 2)
    if numbers is None:
        _fail(path, "contrast_limits", f"is {_kind(value)}, not two numbers [low, high]")
    if not numbers[0] < numbers[1]:
        _fail(path, "contrast_limits", f"is {numbers}: low must be below high")
    return numbers


def _placement(path: Path, value: Any) -> None:
    if not isinstance(value, dict) or not ({"micrometer", "pixel"} & set(value)):
        _fail(path, "placement", f"is {_kind(value)}, not a mapping with 'micrometer' or 'pixel'")
    for unit in ("micrometer", "pixel"):
        if unit not in value:
            continue
        where = value[unit]
        scale = _numbers(where.get("scale") if isinstance(where, dict) else None, 2)
        translate = _numbers(where.get("translate") if isinstance(where, dict) else None, 2)
        if scale is None or min(scale) <= 0:
            _fail(path, f"placement.{unit}.scale", "is not two positive numbers")
        if translate is None:
            _fail(path, f"placement.{unit}.translate", "is not two numbers")


def _levels(path: Path, group: Any, value: Any) -> None:
    if not isinstance(value, list) or not value:
        _fail(path, "levels", f"is {_kind(value)}, not a list of level shapes")
    for index, shape in enumerate(value):
        stored = group.get(str(index))
        if stored is None or not hasattr(stored, "shape"):
            _fail(path, "levels", f"lists level {index}, but the store has no array {str(index)!r}")
        if len(stored.shape) != 2 or list(stored.shape) != shape:
            _fail(
                path,
                "levels",
                f"gives level {index} the shape {shape}, but its array is {list(stored.shape)}",
            )


def _numbers(value: Any, count: int) -> list[float] | None:
    """``value`` as ``count`` finite floats, or None when it is anything else (text too)."""
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    numbers = [float(v) for v in value]
    return numbers if all(math.isfinite(v) for v in numbers) else None


def _kind(value: Any) -> str:
    return "missing" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _fail(path: Path, key: str, problem: str) -> NoReturn:
    name = key if key == HEATMAP_KEY else f"{HEATMAP_KEY}.{key}"
    raise HeatmapStoreError(
        f"{path.name} cannot be opened as a heatmap: its attribute {name} {problem}; "
        f"{REWRITE_ADVICE}"
    )
