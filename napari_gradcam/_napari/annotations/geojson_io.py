"""Annotations layers to and from QuPath GeoJSON: npe2 reader and writers for .geojson.

Shapes and points are written in level-0 pixels of the image they were drawn on (see
``shape_coords``), so a layer drawn on a heatmap, on a pyramid, or with any scale and
translate lands where the tissue is. A read layer gets the image's placement, its data being
level-0 pixels. The image is the one named in the layer's metadata, else the current
viewer's reference image. Areas and lines go to a Shapes layer, points to a Points layer
(see ``qupath_layers`` for what each row keeps).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Layer, Points, Shapes
from napari.utils.notifications import show_warning

from napari_gradcam._napari.annotations.labels import DEFAULT_LABEL, LabelSet
from napari_gradcam._napari.annotations.qupath_layers import (
    LINE_TYPES,
    QUPATH_COLUMN,
    add_labels,
    feature_row,
    frame,
    row_annotation,
    shape_items,
    shape_line,
)
from napari_gradcam._napari.annotations.shape_coords import apply, data_to_pixels, shape_polygons
from napari_gradcam._napari.annotations.style import outline_width
from napari_gradcam._napari.records import is_gradcam_layer
from napari_gradcam._napari.result_layers import placement_kwargs
from napari_gradcam.core.regions.geojson import (
    Annotation,
    GeoJSONError,
    ReadResult,
    read_geojson,
    write_geojson,
)
from napari_gradcam.core.regions.region_stats import STATISTICS

ANNOTATION_KEY = "napari_gradcam_annotations"
"""Metadata key of an annotations layer: ``{"image_layer": name, "labels": {name: rgb}}``."""
TEXT_COLUMNS = ("id", "label", "note", "heatmap")
FEATURE_COLUMNS = (*TEXT_COLUMNS, *STATISTICS)
LayerDataTuple = tuple[Any, dict[str, Any], str]


def feature_defaults(label: str = DEFAULT_LABEL) -> dict[str, Any]:
    """Return the features a newly drawn shape gets (its id is filled in later)."""
    return {
        "id": "",
        "label": label,
        "note": "",
        "heatmap": "",
        **dict.fromkeys(STATISTICS, math.nan),
    }


def ensure_features(shapes: Shapes, label: str = DEFAULT_LABEL) -> pd.DataFrame:
    """Give ``shapes`` every annotation column and an id per shape; return a copy of them."""
    features = shapes.features.copy()
    for column, value in feature_defaults(label).items():
        if column not in features:
            features[column] = value
    missing = features["id"].isna() | (features["id"].astype(str) == "")
    features.loc[missing, "id"] = [str(uuid.uuid4()) for _ in range(int(missing.sum()))]
    features["label"] = features["label"].fillna(label).astype(str)
    features["note"] = features["note"].fillna("").astype(str)
    store_features(shapes, features, label)
    return features


def store_features(shapes: Shapes, features: pd.DataFrame, label: str = DEFAULT_LABEL) -> None:
    """Set the layer's features; shapes drawn next get ``label``, no note and no statistics.

    napari resets the defaults for new shapes to the first row's values whenever features
    are set, so they are set again here.
    """
    shapes.features = features
    defaults = feature_defaults(label)
    extra = {column: math.nan for column in features.columns if column not in defaults}
    shapes.feature_defaults = {**defaults, **extra}


def reference_image(layers: Sequence[Layer], shapes: Layer | None = None) -> Image | None:
    """Return the image that ``shapes`` belongs to: named in its metadata, else the first image.

    Heatmaps are never reference images; a heatmap's own image is used for it instead.
    """
    by_name = {layer.name: layer for layer in layers}
    wanted = shapes.metadata.get(ANNOTATION_KEY, {}).get("image_layer") if shapes else None
    if isinstance(by_name.get(wanted), Image):
        return by_name[wanted]
    images = [layer for layer in layers if isinstance(layer, Image) and not is_gradcam_layer(layer)]
    return images[0] if images else None


def layer_annotations(
    shapes: Shapes, image: Image | None, labels: LabelSet
) -> tuple[list[Annotation], list[str]]:
    """Return the layer's shapes as objects in level-0 pixels, and what was changed.

    Shapes sharing an id are one object (a QuPath object read as an area and lines), except
    a second area with the id of an earlier one (a pasted copy): it is written as a new
    object with a new id. A shape that encloses no area (a click, a flat rectangle) is kept
    as a line through its vertices, and said.
    """
    matrix = data_to_pixels(shapes, image)
    features = ensure_features(shapes)
    columns = [
        *STATISTICS,
        *(c for c in features.columns if c not in (*FEATURE_COLUMNS, QUPATH_COLUMN)),
    ]
    parts: dict[str, dict[str, Any]] = {}
    changed = []
    for index in range(len(shapes.data)):
        kind = shapes.shape_type[index]
        row = features.iloc[index]
        if kind not in LINE_TYPES and parts.get(str(row["id"]), {}).get("polygons"):
            row = row.copy()
            row["id"] = str(uuid.uuid4())
        part = parts.setdefault(str(row["id"]), {"row": row, "polygons": [], "lines": []})
        if kind in LINE_TYPES:
            part["lines"].append(shape_line(shapes, index, matrix))
            continue
        polygons = [p for p in shape_polygons(shapes, index, matrix) if p.area > 0]
        if not polygons:
            changed.append(f"shape {index} ({kind}) encloses no area: kept as a line")
            part["lines"].append(shape_line(shapes, index, matrix))
            continue
        part["polygons"] += polygons
        part["ellipse"] = part.get("ellipse", False) or kind == "ellipse"
    annotations = [
        row_annotation(part.pop("row"), columns, labels, **part)
        for part in parts.values()
        if part["polygons"] or part["lines"]
    ]
    return annotations, changed


def annotations_layer_data(
    annotations: Sequence[Annotation], image: Image | None, name: str = "annotations"
) -> LayerDataTuple:
    """Return a Shapes layer-data tuple of the objects' areas and lines, placed on ``image``."""
    labels = LabelSet()
    add_labels(labels, annotations)
    data, kinds, rows = [], [], []
    for annotation in annotations:
        for vertices, kind in shape_items(annotation):
            data.append(vertices)
            kinds.append(kind)
            rows.append(feature_row(annotation))
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": kinds or "polygon",
        "features": frame(rows, FEATURE_COLUMNS),
        "edge_color": [labels.rgba(row["label"]) for row in rows] or "yellow",
        "face_color": "transparent",
        "metadata": {ANNOTATION_KEY: {"labels": labels.as_dict()}},
    }
    if image is not None:
        kwargs.update(placement_kwargs(image, (1.0, 1.0), (0.0, 0.0)))
        kwargs["metadata"][ANNOTATION_KEY]["image_layer"] = image.name
        kwargs["edge_width"] = outline_width(image)
    return data, kwargs, "shapes"


def points_layer_data(
    annotations: Sequence[Annotation], image: Image | None, name: str = "points"
) -> LayerDataTuple:
    """Return a Points layer-data tuple of the objects' points (one row per point)."""
    labels = LabelSet()
    add_labels(labels, annotations)
    with_points = [a for a in annotations if len(a.points)]
    rows = [feature_row(a) for a in with_points for _ in range(len(a.points))]
    kwargs: dict[str, Any] = {
        "name": name,
        "features": frame(rows, TEXT_COLUMNS),
        "face_color": [labels.rgba(row["label"]) for row in rows] or "yellow",
        "metadata": {ANNOTATION_KEY: {"labels": labels.as_dict()}},
    }
    if image is not None:
        kwargs.update(placement_kwargs(image, (1.0, 1.0), (0.0, 0.0)))
        kwargs["metadata"][ANNOTATION_KEY]["image_layer"] = image.name
        kwargs["size"] = max(4, round(max(image.level_shapes[0][-2:]) / 100))
    data = np.concatenate([np.zeros((0, 2)), *(a.points for a in with_points)])
    return data, kwargs, "points"


def points_annotations(points: Points, image: Image | None, labels: LabelSet) -> list[Annotation]:
    """Return a Points layer's points as objects in level-0 pixels (points sharing an id join)."""
    matrix = data_to_pixels(points, image)
    features = points.features.copy()
    for column, value in feature_defaults().items():
        if column not in features:
            features[column] = value
    missing = features["id"].isna() | (features["id"].astype(str) == "")
    features.loc[missing, "id"] = [str(uuid.uuid4()) for _ in range(int(missing.sum()))]
    columns = [c for c in features.columns if c not in (*FEATURE_COLUMNS, QUPATH_COLUMN)]
    xy = apply(matrix, np.asarray(points.data, dtype=float)[:, -2:])
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(features["id"].astype(str)):
        groups.setdefault(key, []).append(index)
    return [
        row_annotation(features.iloc[rows[0]], columns, labels, points=xy[rows])
        for rows in groups.values()
    ]


def _current_layers() -> list[Layer]:
    import napari

    viewer = napari.current_viewer()
    return list(viewer.layers) if viewer is not None else []


def image_shape(image: Image | None) -> tuple[int, int] | None:
    """``(rows, columns)`` of the level-0 image, if any."""
    return tuple(image.level_shapes[0][-2:]) if image is not None else None


def read_annotations(path: str | Path, layers: Sequence[Layer] = ()) -> list[LayerDataTuple]:
    """Read a GeoJSON file into layers placed on the reference image of ``layers``.

    Areas and lines make a Shapes layer, points a Points layer (``<name> points``). Features
    that cannot be read are skipped, and what could not be kept of the others is left out,
    with a warning naming each; a file with nothing readable raises ``GeoJSONError``.
    """
    image = reference_image(layers)
    return result_layers(read_geojson(path, image_shape=image_shape(image)), path, image)


def result_layers(
    result: ReadResult, path: str | Path, image: Image | None
) -> list[LayerDataTuple]:
    """The layers of a read file (see :func:`read_annotations`); warns of what was left out."""
    name = Path(path).stem
    if result.skipped and not result.annotations:
        raise GeoJSONError(f"{Path(path).name}: nothing to read; " + "; ".join(result.skipped))
    if result.skipped or result.notes:
        show_warning(f"{Path(path).name}: " + "; ".join([*result.skipped, *result.notes]))
    with_shapes = [a for a in result.annotations if a.polygons or a.lines]
    with_points = [a for a in result.annotations if len(a.points)]
    read = []
    if with_shapes or not with_points:
        read.append(annotations_layer_data(with_shapes, image, name=name))
    if with_points:
        points = points_layer_data(with_points, image, name=f"{name} points")
        points[1]["metadata"][ANNOTATION_KEY]["shapes_layer"] = name
        read.append(points)
    return read


def get_geojson_reader(path: str | list[str]) -> Callable[[str], list[LayerDataTuple]] | None:
    """npe2 reader: return a reader for a ``.geojson`` path, else None."""
    if isinstance(path, str) and path.lower().endswith(".geojson"):
        return lambda p: read_annotations(p, _current_layers())
    return None


def layers_annotations(
    annotation_layers: Sequence[Shapes | Points], layers: Sequence[Layer] = ()
) -> tuple[list[Annotation], list[str]]:
    """The objects of Shapes and Points layers in level-0 pixels, and what was changed."""
    annotations, changed = [], []
    for layer in annotation_layers:
        stored = layer.metadata.get(ANNOTATION_KEY, {}).get("labels")
        image = reference_image(layers, layer)
        if isinstance(layer, Points):
            annotations += points_annotations(layer, image, LabelSet(stored))
            continue
        found, said = layer_annotations(layer, image, LabelSet(stored))
        annotations += found
        changed += [f"{layer.name}: {message}" for message in said]
    return annotations, changed


def write_annotations(
    path: str | Path,
    shapes: Shapes | Points,
    layers: Sequence[Layer] = (),
    *,
    overwrite: bool = False,
    points: Sequence[Points] = (),
) -> list[str]:
    """Write an annotations layer (and ``points`` layers) as QuPath GeoJSON in level-0 pixels.

    Shapes that enclose no area (a polygon drawn as a line) are written as lines, with a
    warning.
    """
    annotations, changed = layers_annotations([shapes, *points], layers)
    if changed:
        show_warning("; ".join(changed))
    return [str(write_geojson(path, annotations, overwrite=overwrite))]


def write_shapes(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for one Shapes layer (napari's save dialog has confirmed any overwrite)."""
    shapes = Layer.create(data, meta, "shapes")
    return write_annotations(path, shapes, _current_layers(), overwrite=True)


def write_points(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for one Points layer (each point, or points sharing an id, one object)."""
    points = Layer.create(data, meta, "points")
    return write_annotations(path, points, _current_layers(), overwrite=True)


def write_layers(path: str, layer_data: list[LayerDataTuple]) -> list[str]:
    """npe2 writer for Shapes and Points layers together, into one file."""
    created = [Layer.create(*item) for item in layer_data]
    first, *rest = created
    return write_annotations(path, first, _current_layers(), overwrite=True, points=rest)
