"""QuPath objects as napari layer rows and back: shapes, paths, points and what QuPath keeps.

An object becomes one polygon (or ellipse) shape for its areas, one path shape per line,
and points in a Points layer; all carry the object's id, so they are joined again when
written. What napari cannot show (name, object type, lock, metadata, nucleus, plane, class
colour, which measurements the object had) travels in the hidden ``qupath`` column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from napari_gradcam._napari.annotations.labels import LabelSet
from napari_gradcam._napari.annotations.rings import encode_rings
from napari_gradcam._napari.annotations.shape_coords import apply
from napari_gradcam.core.regions.geojson import Annotation
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.qupath_properties import QuPathFacts

UNCLASSIFIED = "unclassified"
"""The label shown for a QuPath object without a class (written back without one)."""
UNCLASSIFIED_COLOUR = (200, 200, 200)
QUPATH_COLUMN = "qupath"
"""Hidden feature column: JSON of what QuPath records that napari does not show."""
LINE_TYPES = ("path", "line")


def shown_label(annotation: Annotation) -> str:
    """The dock's label of an object ("unclassified" for none)."""
    return annotation.label or UNCLASSIFIED


def add_labels(labels: LabelSet, annotations: Sequence[Annotation]) -> None:
    """Add the objects' classes (with their colours, RGB) to ``labels``."""
    for annotation in annotations:
        if annotation.label:
            labels.add(annotation.label, annotation.colour[:3])
        else:
            labels.add(UNCLASSIFIED, UNCLASSIFIED_COLOUR)


def feature_row(annotation: Annotation) -> dict[str, Any]:
    """The feature columns of every layer row of an object."""
    hidden = {
        **json.loads(annotation.qupath.to_json()),
        "class": [annotation.label, list(annotation.colour)],
        "measured": sorted(annotation.measurements),
    }
    fixed = {"id": annotation.id, "label": shown_label(annotation), "note": annotation.note}
    hidden_text = json.dumps(hidden, allow_nan=False)
    # a measurement named like a fixed column never replaces it
    return {**fixed, "heatmap": "", **annotation.measurements, **fixed, QUPATH_COLUMN: hidden_text}


def _ellipse_box(polygon: Polygon) -> np.ndarray:
    """The four corners of the box around a polygon (napari's ellipse data)."""
    (y0, x0), (y1, x1) = polygon.exterior.min(axis=0), polygon.exterior.max(axis=0)
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])


def shape_items(annotation: Annotation) -> list[tuple[np.ndarray, str]]:
    """(vertices in level-0 pixels, napari shape type) of an object's shapes (no points)."""
    items = []
    polygons = annotation.polygons
    if annotation.qupath.ellipse and len(polygons) == 1 and not polygons[0].holes:
        items.append((_ellipse_box(polygons[0]), "ellipse"))
    elif polygons:
        items.append((encode_rings(polygons), "polygon"))
    items += [(np.asarray(line, dtype=float), "path") for line in annotation.lines]
    return items


def frame(rows: list[dict[str, Any]], first: Sequence[str]) -> pd.DataFrame:
    """Rows as a table with the ``first`` columns first (then every other, in order seen)."""
    keys = [key for row in rows for key in row]
    return pd.DataFrame(rows, columns=list(dict.fromkeys([*first, *keys])))


def _hidden(row: pd.Series) -> dict[str, Any]:
    text = row.get(QUPATH_COLUMN)
    try:
        return json.loads(text) if isinstance(text, str) and text else {}
    except json.JSONDecodeError:
        return {}


def _measurements(row: pd.Series, hidden: dict[str, Any], columns: Sequence[str]) -> dict:
    """The object's own measurements (even NaN), and the finite values of other columns."""
    measured = set(hidden.get("measured", []))
    values = {}
    for name in columns:
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            continue
        if name in measured or math.isfinite(float(value)):
            values[name] = float(value)
    return values


def row_annotation(
    row: pd.Series,
    columns: Sequence[str],
    labels: LabelSet,
    *,
    polygons: Sequence[Polygon] = (),
    lines: Sequence[np.ndarray] = (),
    points: np.ndarray | None = None,
    ellipse: bool = False,
) -> Annotation:
    """The object of a layer row with the given geometry (level-0 pixels).

    ``columns`` are the numeric columns that may be measurements.
    """
    hidden = _hidden(row)
    facts = QuPathFacts.from_json(json.dumps(hidden))
    if ellipse:
        facts.ellipse = True
    label = str(row["label"])
    was_label, was_colour = hidden.get("class", [None, None])
    colour = tuple(was_colour) if label == was_label and was_colour else labels.colour(label)
    return Annotation(
        tuple(polygons),
        "" if label == UNCLASSIFIED else label,
        colour,
        str(row["note"]),
        _measurements(row, hidden, columns),
        str(row["id"]),
        lines=tuple(lines),
        points=np.zeros((0, 2)) if points is None else points,
        qupath=facts,
    )


def shape_line(shapes: Any, index: int, matrix: np.ndarray) -> np.ndarray:
    """A path or line shape's vertices in level-0 pixels."""
    return apply(matrix, np.asarray(shapes.data[index], dtype=float)[:, -2:])
