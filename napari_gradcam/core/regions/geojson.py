"""QuPath GeoJSON: objects to and from a FeatureCollection, nothing dropped silently.

Reads what QuPath 0.2 to 0.6 write and accept: a FeatureCollection, a bare list of features
or one feature; annotations, detections, cells (with their nucleus) and tiles; polygons
with holes, lines and points; classes as text or objects, derived classes shown as
``"A: B"``; NaN and infinite measurements; names, ids, colours, locks, metadata, planes and
ellipses. Whatever a feature holds that cannot be kept is named in :attr:`ReadResult.notes`;
a feature that cannot be read at all is named in :attr:`ReadResult.skipped`.

Writes strict JSON that QuPath reads back: every classification with a colour, non-finite
measurements as QuPath writes them, closed rings. Geometry conventions are in
:mod:`~napari_gradcam.core.regions.qupath_geometry`, properties in
:mod:`~napari_gradcam.core.regions.qupath_properties`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.regions.bounded_json import JSONLimitError, JSONLimits, loads_bounded
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.qupath_geometry import (
    PIXEL_CENTRE,
    Geometry,
    read_geometry,
    write_geometry,
)
from napari_gradcam.core.regions.qupath_properties import (
    DEFAULT_COLOUR,
    KNOWN_PROPERTIES,
    OBJECT_TYPES,
    QuPathFacts,
    merge_duplicate_keys,
    read_classification,
    read_colour,
    read_measurements,
    read_metadata,
    read_object_type,
    strict,
    write_classification,
    write_number,
)

MAX_BYTES = 256 * 1024 * 1024
MAX_FEATURES = 100_000
MAX_VERTICES = 2_000_000
MAX_DEPTH = 64
"""Arrays and objects inside one another (QuPath writes fewer than 12)."""
OUTSIDE_TOLERANCE = 0.5
"""Pixels a vertex may lie beyond the image's edge before its feature is noted as crossing it."""
DEFAULT_PLANE = {"c": -1, "z": 0, "t": 0}
"""QuPath's default image plane (not written)."""


class GeoJSONError(ValueError):
    """A GeoJSON file or object that cannot be read at all."""


@dataclass
class Annotation:
    """One QuPath object: its shapes in level-0 napari pixels, class, note and measurements.

    Attributes
    ----------
    polygons : tuple of Polygon
        Its areas (holes included); empty for a line or point object.
    label : str
        The classification as shown (``"A: B"`` for a derived class); "" for none.
    colour : tuple of int
        The class's colour, RGB (or RGBA) 0-255.
    note : str
        The review note (QuPath metadata ``note``).
    measurements : dict of str to float
        NaN and infinities included.
    id : str
        QuPath's object id (a UUID).
    lines : tuple of numpy.ndarray
        Open polylines, (N, 2) each.
    points : numpy.ndarray
        (N, 2) points.
    qupath : QuPathFacts
        Name, object type, colour, lock, metadata, plane, ellipse, nucleus and any other
        property, kept for the way back.
    """

    polygons: tuple[Polygon, ...]
    label: str = "unclear"
    colour: tuple[int, ...] = DEFAULT_COLOUR
    note: str = ""
    measurements: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    lines: tuple[np.ndarray, ...] = ()
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    qupath: QuPathFacts = field(default_factory=QuPathFacts)

    @property
    def geometry(self) -> Geometry:
        """Its polygons, lines and points together."""
        return Geometry(self.polygons, self.lines, np.asarray(self.points, dtype=float))


@dataclass
class ReadResult:
    """Objects read from GeoJSON, the features skipped and what could not be kept of the rest.

    Attributes
    ----------
    skipped : list of str
        One message per feature that could not be read at all.
    notes : list of str
        One message per feature read with something left out or changed.
    """

    annotations: list[Annotation]
    skipped: list[str]
    notes: list[str] = field(default_factory=list)


def _properties(annotation: Annotation) -> dict[str, Any]:
    facts = annotation.qupath
    properties: dict[str, Any] = {"objectType": facts.object_type}
    if facts.name:
        properties["name"] = facts.name
    if facts.colour is not None:
        properties["color"] = list(facts.colour)
    if annotation.label:
        properties["classification"] = write_classification(annotation.label, annotation.colour)
    if facts.locked:
        properties["isLocked"] = True
    if annotation.measurements:
        properties["measurements"] = {
            str(name): write_number(value) for name, value in annotation.measurements.items()
        }
    metadata = {**facts.metadata, **({"note": annotation.note} if annotation.note else {})}
    if metadata:
        properties["metadata"] = metadata
    return {**properties, **strict(facts.extra)}


def to_feature(annotation: Annotation) -> dict[str, Any]:
    """Return the GeoJSON Feature of one object, as QuPath writes it."""
    facts = annotation.qupath
    geometry = write_geometry(annotation.geometry)
    if facts.plane is not None:
        geometry["plane"] = dict(facts.plane)
    if facts.ellipse:
        geometry["isEllipse"] = True
    feature: dict[str, Any] = {"type": "Feature", "id": annotation.id, "geometry": geometry}
    if facts.nucleus is not None:
        feature["nucleusGeometry"] = facts.nucleus
    feature["properties"] = _properties(annotation)
    return feature


def to_feature_collection(annotations: Sequence[Annotation]) -> dict[str, Any]:
    """Return the FeatureCollection of the objects."""
    return {"type": "FeatureCollection", "features": [to_feature(a) for a in annotations]}


def dumps(annotations: Sequence[Annotation]) -> str:
    """Return the FeatureCollection as strict JSON text (no bare NaN or Infinity)."""
    text = json.dumps(to_feature_collection(annotations), allow_nan=False, ensure_ascii=False)
    return text + "\n"


def _note_outside(geometry: Geometry, image_shape: Sequence[int], notes: list[str]) -> None:
    """Note an object that crosses the image's edge (QuPath keeps those; so does this reader)."""
    points = geometry.vertices + PIXEL_CENTRE
    low, high = points.min(axis=0), points.max(axis=0)
    limit = np.asarray(image_shape[:2], dtype=float) + OUTSIDE_TOLERANCE
    if np.any(low < -OUTSIDE_TOLERANCE) or np.any(high > limit):
        notes.append(
            f"its coordinates (x {low[1]:.1f} to {high[1]:.1f}, y {low[0]:.1f} to "
            f"{high[0]:.1f}) reach beyond the {image_shape[1]} x {image_shape[0]} image; "
            "kept whole, with its coordinates unchanged"
        )


def _geometry_facts(raw: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    plane = raw.get("plane")
    if isinstance(plane, dict):
        plane = {axis: int(plane.get(axis, DEFAULT_PLANE[axis])) for axis in DEFAULT_PLANE}
        if plane != DEFAULT_PLANE:
            notes.append(f"on plane {plane}: kept for export, shown on the current plane")
    return {
        "plane": plane if plane != DEFAULT_PLANE and isinstance(plane, dict) else None,
        "ellipse": raw.get("isEllipse") is True,
    }


def _nucleus(feature: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    raw = feature.get("nucleusGeometry")
    if raw is None:
        return None
    try:
        read_geometry(raw, [])
    except ValueError as err:
        notes.append(f"nucleus left out: {str(err).replace('its ', 'the nucleus ')}")
        return None
    return raw


def _qupath_facts(
    feature: dict[str, Any], properties: dict[str, Any], notes: list[str]
) -> QuPathFacts:
    metadata, metadata_notes = read_metadata(properties.get("metadata"))
    notes += metadata_notes
    extra = {k: v for k, v in properties.items() if k not in KNOWN_PROPERTIES}
    if "childObjects" in extra or "children" in extra:
        notes.append("child objects kept for export, not shown")
    name = properties.get("name")
    return QuPathFacts(
        name="" if name is None else str(name),
        object_type=read_object_type(properties, feature.get("id")),
        colour=read_colour(properties.get("color")),
        locked=properties.get("isLocked") is True,
        metadata={k: v for k, v in metadata.items() if k != "note"},
        nucleus=_nucleus(feature, notes),
        extra=extra,
        **_geometry_facts(feature["geometry"], notes),
    )


def from_feature(
    feature: Any, image_shape: Sequence[int] | None = None, notes: list[str] | None = None
) -> Annotation:
    """Return the object of one Feature, or raise ``ValueError`` saying what is wrong.

    What is read but cannot be kept (or was repaired) is appended to ``notes``.
    """
    notes = [] if notes is None else notes
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValueError("it is not a GeoJSON Feature")
    geometry = read_geometry(feature.get("geometry"), notes)
    if image_shape is not None:
        _note_outside(geometry, image_shape, notes)
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        raise ValueError("its properties are not an object")
    label, colour = read_classification(properties.get("classification"))
    measurements, measurement_notes = read_measurements(properties.get("measurements"))
    notes += measurement_notes
    metadata = properties.get("metadata")
    note = metadata.get("note", "") if isinstance(metadata, dict) else ""
    feature_id = feature.get("id")
    return Annotation(
        polygons=geometry.polygons,
        label=label,
        colour=colour or DEFAULT_COLOUR,
        note=str(note),
        measurements=measurements,
        id=_object_id(feature_id),
        lines=geometry.lines,
        points=geometry.points,
        qupath=_qupath_facts(feature, properties, notes),
    )


def _object_id(raw: Any) -> str:
    """The feature's id; a new UUID for none, or for QuPath 0.2's type names used as ids."""
    if raw is None or raw == "" or raw in OBJECT_TYPES:
        return str(uuid.uuid4())
    return str(raw)


def _feature_list(data: Any) -> list[Any]:
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
        ``(rows, columns)`` of the level-0 image; features reaching outside it are kept whole
        and noted.

    Raises GeoJSONError when ``data`` is not GeoJSON, has too many features or too many vertices.
    """
    annotations, skipped, notes, vertices = [], [], [], 0
    for index, feature in enumerate(_feature_list(data)):
        said: list[str] = []
        try:
            annotation = from_feature(feature, image_shape, said)
        except (ValueError, TypeError, AttributeError, OverflowError) as err:
            skipped.append(f"feature {index} skipped: {err}")
            continue
        vertices += len(annotation.geometry.vertices)
        if vertices > MAX_VERTICES:
            raise GeoJSONError(f"more than {MAX_VERTICES} vertices; simplify the shapes first")
        annotations.append(annotation)
        notes += [f"feature {index}: {message}" for message in said]
    return ReadResult(annotations, skipped, notes)


def read_geojson(path: str | Path, image_shape: Sequence[int] | None = None) -> ReadResult:
    """Read a ``.geojson`` file; see :func:`from_geojson`.

    The file is measured before it is parsed (see :mod:`.bounded_json`): one larger than
    :data:`MAX_BYTES`, nested deeper than :data:`MAX_DEPTH`, with a number longer than 64
    characters or about more than :data:`MAX_VERTICES` vertices is refused without being
    parsed. Raises GeoJSONError when the file is missing, beyond a limit, not JSON or not GeoJSON.
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
        data = loads_bounded(
            path.read_bytes(), geojson_limits(), path.name, object_pairs_hook=merge_duplicate_keys
        )
    except JSONLimitError as err:
        raise GeoJSONError(str(err)) from err
    return from_geojson(data, image_shape)


def geojson_limits() -> JSONLimits:
    """What :func:`read_geojson` parses at most (from this module's ``MAX_*``)."""
    return JSONLimits(
        max_bytes=MAX_BYTES, max_arrays=MAX_VERTICES + 4 * MAX_FEATURES, max_depth=MAX_DEPTH
    )


def write_geojson(
    path: str | Path, annotations: Sequence[Annotation], *, overwrite: bool = False
) -> Path:
    """Write the annotations as a FeatureCollection, atomically.

    Raises FileExistsError when ``path`` exists and ``overwrite`` is False.
    """
    from napari_gradcam.core.output_files import atomic_write

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another name or allow overwrite")
    text = dumps(annotations)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
