"""Annotations Shapes layers to and from QuPath GeoJSON: npe2 reader and writer for .geojson.

Shapes are written in level-0 pixels of the image they were drawn on (see ``shape_coords``),
so a layer drawn on a heatmap, on a pyramid, or with any scale and translate lands where the
tissue is. A read layer gets the image's placement, its data being level-0 pixels. The image
is the one named in the layer's metadata, else the current viewer's reference image.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Layer, Shapes
from napari.utils.notifications import show_warning

from napari_gradcam._napari.annotations.labels import DEFAULT_LABEL, LabelSet
from napari_gradcam._napari.annotations.rings import encode_rings
from napari_gradcam._napari.annotations.shape_coords import data_to_pixels, shape_polygons
from napari_gradcam._napari.layers import placement_kwargs
from napari_gradcam._napari.records import is_gradcam_layer
from napari_gradcam.core.regions.geojson import (
    Annotation,
    GeoJSONError,
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
    """Return the layer's shapes as annotations in level-0 pixels, and what was skipped."""
    matrix = data_to_pixels(shapes, image)
    features = ensure_features(shapes)
    extra = [c for c in features.columns if c not in FEATURE_COLUMNS]
    annotations, skipped = [], []
    for index in range(len(shapes.data)):
        polygons = shape_polygons(shapes, index, matrix)
        if not polygons:
            kind = shapes.shape_type[index]
            skipped.append(f"shape {index} ({kind}) encloses no area; GeoJSON keeps polygons")
            continue
        row = features.iloc[index]
        label = str(row["label"])
        measurements = {name: row[name] for name in (*STATISTICS, *extra)}
        annotations.append(
            Annotation(
                tuple(polygons), label, labels.colour(label), str(row["note"]),
                _finite(measurements), str(row["id"]),
            )
        )  # fmt: skip
    return annotations, skipped


def _finite(values: dict[str, Any]) -> dict[str, float]:
    numbers = {k: v for k, v in values.items() if isinstance(v, int | float | np.number)}
    return {k: float(v) for k, v in numbers.items() if math.isfinite(float(v))}


def annotations_layer_data(
    annotations: Sequence[Annotation], image: Image | None, name: str = "annotations"
) -> LayerDataTuple:
    """Return a Shapes layer-data tuple of annotations placed on ``image`` (if any)."""
    labels = LabelSet()
    for annotation in annotations:
        labels.add(annotation.label, annotation.colour)
    rows = [
        {"id": a.id, "label": a.label, "note": a.note, "heatmap": "", **a.measurements}
        for a in annotations
    ]
    features = pd.DataFrame(rows, columns=list(dict.fromkeys([*FEATURE_COLUMNS, *_keys(rows)])))
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "polygon",
        "features": features,
        "edge_color": [labels.rgba(a.label) for a in annotations] or "yellow",
        "face_color": "transparent",
        "metadata": {ANNOTATION_KEY: {"labels": labels.as_dict()}},
    }
    if image is not None:
        kwargs.update(placement_kwargs(image, (1.0, 1.0), (0.0, 0.0)))
        kwargs["metadata"][ANNOTATION_KEY]["image_layer"] = image.name
        kwargs["edge_width"] = max(2, round(max(image.level_shapes[0][-2:]) / 400))
    data = [encode_rings(a.polygons) for a in annotations]
    return data, kwargs, "shapes"


def _keys(rows: list[dict[str, Any]]) -> list[str]:
    return [key for row in rows for key in row]


def _current_layers() -> list[Layer]:
    import napari

    viewer = napari.current_viewer()
    return list(viewer.layers) if viewer is not None else []


def read_annotations(path: str | Path, layers: Sequence[Layer] = ()) -> list[LayerDataTuple]:
    """Read a GeoJSON file into one Shapes layer placed on the reference image of ``layers``.

    Features that cannot be read are skipped with a warning naming each; a file with none
    readable raises ``GeoJSONError``.
    """
    image = reference_image(layers)
    shape = tuple(image.level_shapes[0][-2:]) if image is not None else None
    result = read_geojson(path, image_shape=shape)
    if result.skipped and not result.annotations:
        raise GeoJSONError(f"{Path(path).name}: nothing to read; " + "; ".join(result.skipped))
    if result.skipped:
        show_warning(f"{Path(path).name}: " + "; ".join(result.skipped))
    return [annotations_layer_data(result.annotations, image, name=Path(path).stem)]


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerDataTuple]] | None:
    """npe2 reader: return a reader for a ``.geojson`` path, else None."""
    if isinstance(path, str) and path.lower().endswith(".geojson"):
        return lambda p: read_annotations(p, _current_layers())
    return None


def write_annotations(
    path: str | Path,
    shapes: Shapes,
    layers: Sequence[Layer] = (),
    *,
    overwrite: bool = False,
) -> list[str]:
    """Write an annotations layer as QuPath GeoJSON in level-0 pixels of its image.

    Shapes without area (lines, paths) are left out with a warning.
    """
    stored = shapes.metadata.get(ANNOTATION_KEY, {}).get("labels")
    image = reference_image(layers, shapes)
    annotations, skipped = layer_annotations(shapes, image, LabelSet(stored))
    if skipped:
        show_warning("; ".join(skipped))
    return [str(write_geojson(path, annotations, overwrite=overwrite))]


def write_shapes(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer for one Shapes layer (napari's save dialog has confirmed any overwrite)."""
    shapes = Layer.create(data, meta, "shapes")
    return write_annotations(path, shapes, _current_layers(), overwrite=True)
