"""QuPath-compatible GeoJSON: annotations to and from a FeatureCollection.

QuPath's pixel coordinates put the image's top-left *corner* at (0, 0) and list points as
(x, y); napari puts the top-left pixel's *centre* at (0, 0) and lists (row, column). So a
point at napari row ``r``, column ``c`` of the level-0 image is QuPath ``(c + 0.5, r + 0.5)``.
Annotations here hold polygons in napari's level-0 (row, column) pixels; only this module
swaps axes and shifts by half a pixel.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.regions.polygons import Polygon, open_ring

PIXEL_CENTRE = 0.5
"""QuPath coordinate of the first pixel's centre."""
MAX_BYTES = 64 * 1024 * 1024
MAX_FEATURES = 20_000
MAX_VERTICES = 2_000_000
OUTSIDE_TOLERANCE = 0.5
"""Pixels a vertex may lie beyond the image's edge before its feature is refused."""
DEFAULT_COLOUR = (255, 255, 0)


class GeoJSONError(ValueError):
    """A GeoJSON file or object that cannot be read at all."""


@dataclass
class Annotation:
    """A region for review: polygons in level-0 napari pixels, a label, a note, measurements."""

    polygons: tuple[Polygon, ...]
    label: str = "unclear"
    colour: tuple[int, int, int] = DEFAULT_COLOUR
    note: str = ""
    measurements: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class ReadResult:
    """Annotations read from GeoJSON and one message per feature that was skipped."""

    annotations: list[Annotation]
    skipped: list[str]


def _ring_to_xy(ring: np.ndarray) -> list[list[float]]:
    xy = np.asarray(ring, dtype=float)[:, ::-1] + PIXEL_CENTRE
    return [*xy.tolist(), xy[0].tolist()]


def _ring_from_xy(coordinates: Any) -> np.ndarray:
    points = np.asarray(coordinates, dtype=float)
    if points.ndim != 2 or points.shape[1] < 2 or not np.all(np.isfinite(points)):
        raise ValueError("a ring must be a list of finite [x, y] positions")
    ring = open_ring(points[:, 1::-1] - PIXEL_CENTRE)
    if len(ring) < 3:
        raise ValueError(f"a ring has {len(ring)} distinct points; a polygon needs at least 3")
    return ring


def to_feature(annotation: Annotation) -> dict[str, Any]:
    """Return the GeoJSON Feature of one annotation (Polygon, or MultiPolygon for parts)."""
    parts = [[_ring_to_xy(ring) for ring in polygon.rings] for polygon in annotation.polygons]
    geometry = (
        {"type": "Polygon", "coordinates": parts[0]}
        if len(parts) == 1
        else {"type": "MultiPolygon", "coordinates": parts}
    )
    measurements = {
        name: float(value)
        for name, value in annotation.measurements.items()
        if value is not None and math.isfinite(float(value))
    }
    properties = {
        "objectType": "annotation",
        "name": annotation.label,
        "classification": {"name": annotation.label, "color": list(annotation.colour)},
        "measurements": measurements,
        "metadata": {"note": annotation.note},
    }
    return {"type": "Feature", "id": annotation.id, "geometry": geometry, "properties": properties}


def to_feature_collection(annotations: Sequence[Annotation]) -> dict[str, Any]:
    """Return the FeatureCollection of the annotations."""
    return {"type": "FeatureCollection", "features": [to_feature(a) for a in annotations]}


def dumps(annotations: Sequence[Annotation]) -> str:
    """Return the FeatureCollection as JSON text."""
    return json.dumps(to_feature_collection(annotations), indent=1) + "\n"


def _polygons(geometry: Any) -> tuple[Polygon, ...]:
    if not isinstance(geometry, dict) or "type" not in geometry:
        raise ValueError("it has no geometry")
    kind, coordinates = geometry["type"], geometry.get("coordinates")
    if kind not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"its geometry is a {kind}; only Polygon and MultiPolygon are read")
    parts = [coordinates] if kind == "Polygon" else coordinates
    if (
        not isinstance(parts, list)
        or not parts
        or not all(isinstance(p, list) and p for p in parts)
    ):
        raise ValueError(f"its {kind} has no rings")
    return tuple(
        Polygon(_ring_from_xy(part[0]), tuple(_ring_from_xy(hole) for hole in part[1:]))
        for part in parts
    )


def _check_inside(polygons: Sequence[Polygon], image_shape: Sequence[int]) -> None:
    points = np.concatenate([ring for p in polygons for ring in p.rings]) + PIXEL_CENTRE
    low, high = points.min(axis=0), points.max(axis=0)
    limit = np.asarray(image_shape[:2], dtype=float) + OUTSIDE_TOLERANCE
    if np.any(low < -OUTSIDE_TOLERANCE) or np.any(high > limit):
        raise ValueError(
            f"its coordinates (x {low[1]:.1f} to {high[1]:.1f}, y {low[0]:.1f} to "
            f"{high[0]:.1f}) leave the {image_shape[1]} x {image_shape[0]} image"
        )


def _measurements(raw: Any) -> dict[str, float]:
    """QuPath writes ``{name: value}``; versions before 0.4 wrote ``[{name, value}]``."""
    if isinstance(raw, list):
        raw = {item.get("name"): item.get("value") for item in raw if isinstance(item, dict)}
    if not isinstance(raw, dict):
        return {}
    return {
        str(name): float(value)
        for name, value in raw.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def _colour(classification: dict[str, Any]) -> tuple[int, int, int]:
    colour = classification.get("color")
    if isinstance(colour, list) and len(colour) == 3 and all(isinstance(c, int) for c in colour):
        return tuple(int(np.clip(c, 0, 255)) for c in colour)
    return DEFAULT_COLOUR


def from_feature(feature: Any, image_shape: Sequence[int] | None = None) -> Annotation:
    """Return the annotation of one Feature, or raise ``ValueError`` saying what is wrong."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValueError("it is not a GeoJSON Feature")
    polygons = _polygons(feature.get("geometry"))
    if image_shape is not None:
        _check_inside(polygons, image_shape)
    properties = feature.get("properties") or {}
    classification = properties.get("classification") or {}
    metadata = properties.get("metadata") or {}
    label = classification.get("name") or properties.get("name") or "unclear"
    return Annotation(
        polygons=polygons,
        label=str(label),
        colour=_colour(classification),
        note=str(metadata.get("note", properties.get("note", ""))),
        measurements=_measurements(properties.get("measurements")),
        id=str(feature.get("id") or uuid.uuid4()),
    )


def _features(data: Any) -> list[Any]:
    """The features of a FeatureCollection, a list of Features (QuPath's default) or a Feature."""
    if isinstance(data, list):
        features = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    else:
        raise GeoJSONError("not GeoJSON: expected a FeatureCollection, a Feature or a list of them")
    if not isinstance(features, list):
        raise GeoJSONError("the FeatureCollection has no list of features")
    if len(features) > MAX_FEATURES:
        raise GeoJSONError(
            f"{len(features)} features is more than the {MAX_FEATURES} this reader accepts; "
            "split the file or export fewer objects"
        )
    return features


def from_geojson(data: Any, image_shape: Sequence[int] | None = None) -> ReadResult:
    """Read annotations from parsed GeoJSON, skipping (and naming) the features that fail.

    Parameters
    ----------
    data : dict or list
        A FeatureCollection, a Feature, or a list of Features.
    image_shape : sequence of int, optional
        ``(rows, columns)`` of the level-0 image; features reaching outside it are skipped.

    Raises
    ------
    GeoJSONError
        When ``data`` is not GeoJSON, has too many features or too many vertices.
    """
    annotations, skipped, vertices = [], [], 0
    for index, feature in enumerate(_features(data)):
        try:
            annotation = from_feature(feature, image_shape)
        except (ValueError, TypeError, AttributeError) as err:
            skipped.append(f"feature {index} skipped: {err}")
            continue
        vertices += sum(len(ring) for p in annotation.polygons for ring in p.rings)
        if vertices > MAX_VERTICES:
            raise GeoJSONError(f"more than {MAX_VERTICES} vertices; simplify the shapes first")
        annotations.append(annotation)
    return ReadResult(annotations, skipped)


def read_geojson(path: str | Path, image_shape: Sequence[int] | None = None) -> ReadResult:
    """Read a ``.geojson`` file; see :func:`from_geojson`.

    Raises
    ------
    GeoJSONError
        When the file is missing, larger than :data:`MAX_BYTES`, not JSON or not GeoJSON.
    """
    path = Path(path)
    if not path.is_file():
        raise GeoJSONError(f"no GeoJSON file {str(path)!r}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise GeoJSONError(
            f"{path.name} is {size / 2**20:.0f} MiB, more than the {MAX_BYTES // 2**20} MiB "
            "this reader accepts; export fewer or simpler objects"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GeoJSONError(f"{path.name} is not valid JSON: {err}") from err
    return from_geojson(data, image_shape)


def write_geojson(
    path: str | Path, annotations: Sequence[Annotation], *, overwrite: bool = False
) -> Path:
    """Write the annotations as a FeatureCollection, atomically.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    """
    from napari_gradcam.files import atomic_write

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another name or allow overwrite")
    text = dumps(annotations)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
