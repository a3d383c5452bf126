"""Per-tile results as QuPath objects: one square per tile with its numbers as measurements.

QuPath can then colour the slide by any measurement (probability, entropy, energy, ...)
and filter tiles by it. Tiles are ``tile`` objects (or ``detection`` objects, which QuPath
lists with its other detections), classified by their predicted class.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.regions.geojson import Annotation, write_geojson
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.qupath_properties import QuPathFacts

TILE_TYPES = ("tile", "detection")
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
"""Colours of the classes, in order of first appearance (ten, then repeated)."""
NOT_MEASURED = frozenset({"box", "status"})
"""Columns that are neither measurements nor metadata."""


def tile_square(box: Sequence[float]) -> Polygon:
    """The square of a level-0 box ``(y0, x0, y1, x1)`` (pixel edges) in napari pixels."""
    y0, x0, y1, x1 = (float(v) - 0.5 for v in box)
    return Polygon(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]))


def _measurement(value: Any) -> float | None:
    """A number (booleans as 0 or 1, blanks as NaN); None for text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool | np.bool_):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def tile_annotations(
    boxes: np.ndarray,
    columns: Mapping[str, Sequence[Any]],
    *,
    class_column: str = "class",
    object_type: str = "tile",
) -> list[Annotation]:
    """One QuPath object per tile: its square, class, and every other column.

    Parameters
    ----------
    boxes : numpy.ndarray
        (N, 4) level-0 boxes ``(y0, x0, y1, x1)`` (pixel edges, end exclusive).
    columns : mapping of str to sequence
        Per-tile values (N each). ``class_column`` becomes the classification; numbers and
        flags become measurements (flags as 0 or 1, blanks as NaN); text goes to metadata.
    class_column : str
        The column holding the class name.
    object_type : {"tile", "detection"}
        QuPath's object type.

    Returns
    -------
    list of Annotation
        In the order of ``boxes``.
    """
    if object_type not in TILE_TYPES:
        raise ValueError(f"object_type must be one of {TILE_TYPES}, got {object_type!r}")
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    for name, values in columns.items():
        if len(values) != len(boxes):
            raise ValueError(f"column {name!r} has {len(values)} values for {len(boxes)} tiles")
    classes = [str(c) for c in columns.get(class_column, [""] * len(boxes))]
    palette = {
        name: CLASS_COLOURS[i % len(CLASS_COLOURS)] for i, name in enumerate(dict.fromkeys(classes))
    }
    tiles = []
    for row, box in enumerate(boxes):
        measurements, metadata = {}, {}
        for name, values in columns.items():
            if name in NOT_MEASURED or name == class_column:
                continue
            number = _measurement(values[row])
            if number is None:
                metadata[name] = str(values[row])
            else:
                measurements[name] = number
        facts = QuPathFacts(object_type=object_type, metadata=metadata)
        label = classes[row]
        tiles.append(
            Annotation((tile_square(box),), label, palette[label], "", measurements, qupath=facts)
        )
    return tiles


def write_tiles_geojson(
    path: str | Path,
    boxes: np.ndarray,
    columns: Mapping[str, Sequence[Any]],
    *,
    object_type: str = "tile",
    overwrite: bool = False,
) -> Path:
    """Write the tiles as a QuPath GeoJSON FeatureCollection (see :func:`tile_annotations`).

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    """
    tiles = tile_annotations(boxes, columns, object_type=object_type)
    return write_geojson(path, tiles, overwrite=overwrite)
