"""napari layers made from results: the heatmap image and the annotations Shapes layer."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import numpy as np
from napari.layers import Image, Shapes
from napari.utils.transforms.transform_utils import expand_upper_triangular

from napari_gradcam._napari.explain.job import ExplainJob, RegionResult
from napari_gradcam._napari.heatmap_style import (
    DEFAULT_OPACITY,
    DISPLAY_RANGE,
    heatmap_colormap,
    to_display,
)
from napari_gradcam._napari.records import METADATA_KEY, HeatmapRecord
from napari_gradcam._napari.regions import WHOLE_LAYER, Box
from napari_gradcam._napari.target_words import names_a_class
from napari_gradcam.core.explain.method_options import options_label
from napari_gradcam.core.regions.placement import heatmap_transform
from napari_gradcam.core.settings import ExplainSettings

__all__ = [
    "ANNOTATIONS_NAME",
    "METADATA_KEY",
    "annotations_layer",
    "heatmap_layer",
    "heatmap_name",
    "heatmap_record",
    "placement_kwargs",
]
ANNOTATIONS_NAME = "annotations"
SEPARATOR = " · "
EACH_TILE = "each tile's class"
"""The target of a tiled map whose tiles each explain their own top class, in words."""
LayerDataTuple = tuple[Any, dict[str, Any], str]


def contrast_limits(cam: np.ndarray) -> tuple[float, float]:
    """Return ``(min, max)`` of the map, or ``(0, 1)`` for a flat map."""
    low, high = float(cam.min()), float(cam.max())
    return (low, high) if high > low else (0.0, 1.0)


def _plane_shear(layer: Image) -> np.ndarray:
    """The layer's shear matrix (unit upper triangular) restricted to its last two axes."""
    shear = np.asarray(layer.shear, dtype=float)
    matrix = expand_upper_triangular(shear) if shear.ndim == 1 else shear
    return matrix[-2:, -2:]


def placement_kwargs(
    layer: Image, stride: tuple[float, float], origin: tuple[float, float]
) -> dict[str, Any]:
    """Return scale, translate, units (and rotate/shear/affine when not identity) aligning a map.

    napari applies ``rotate @ shear @ scale`` before ``translate``, so the offset of the map's
    first cell is sheared and rotated like the image before it is added to the image's
    translate.
    """
    image_scale = tuple(layer.scale[-2:])
    image_translate = np.asarray(layer.translate[-2:], dtype=float)
    scale, translate = heatmap_transform(stride, origin, image_scale, tuple(image_translate))
    rotation = np.asarray(layer.rotate, dtype=float)[-2:, -2:]
    shear = _plane_shear(layer)
    offset = rotation @ shear @ (np.asarray(translate) - image_translate)
    kwargs: dict[str, Any] = {
        "scale": scale,
        "translate": tuple(image_translate + offset),
        "units": tuple(layer.units[-2:]),
    }
    if not np.allclose(rotation, np.eye(2)):
        kwargs["rotate"] = rotation
    if not np.allclose(shear, np.eye(2)):
        kwargs["shear"] = shear
    affine = np.asarray(layer.affine.affine_matrix, dtype=float)[-3:, -3:]  # homogeneous
    if not np.allclose(affine, np.eye(3)):
        kwargs["affine"] = affine
    return kwargs


def heatmap_record(
    result: RegionResult, layer: Image, job: ExplainJob, raw: tuple[float, float] | None = None
) -> HeatmapRecord:
    """The record of one explained region's heatmap over ``layer``.

    ``raw``: the raw map's ``(min, max)`` when the layer shows it as 0-1 of that range.
    """
    explanation, placed = result.explanation, result.placed
    target = result.settings.target
    is_class = names_a_class(target)
    probability = float(explanation.probabilities[0])
    return HeatmapRecord(
        spec=job.spec,
        weights=job.weights,
        settings=result.settings.replace(
            method=explanation.method,
            layer=explanation.layer,
            target=explanation.target_names[0] if is_class else target,
            tta=explanation.tta,
            bfloat16=explanation.bfloat16,
        ),
        target_name=explanation.target_names[0],
        stride=placed.stride,
        origin=placed.origin,
        image_layer=layer.name,
        box=result.box,
        target_index=int(explanation.targets[0]) if is_class else None,
        score=float(explanation.scores[0]),
        probability=probability if math.isfinite(probability) else None,
        slice_index=job.plane.slice_index if job.plane else (),
        level=result.level,
        normalisation=DISPLAY_RANGE if raw is not None else None,
        raw_range=raw,
    )


def method_label(settings: ExplainSettings) -> str:
    """The method as named in layer names.

    E.g. ``"Score-CAM TTA bf16"``, ``"Class-token attention head 2"``.
    """
    from napari_gradcam.core.explain.methods import METHODS

    found = METHODS.get(settings.method)
    flags = [
        found.title if found else settings.method,
        *(["TTA"] if settings.tta else []),
        *(["bf16"] if settings.bfloat16 else []),
        options_label(settings.options),
    ]
    return " ".join(flag for flag in flags if flag)


def model_label(spec: str, weights: str | None) -> str:
    """A short name of the model for layer names.

    The weights' or model file's stem, the factory's module, the timm architecture, or the
    bundled name (``"demo"``).
    """
    if weights:
        return PurePath(weights).stem
    source, colon, factory = spec.rpartition(":")
    if colon and "/" not in factory and "\\" not in factory:
        if source == "timm":
            return factory
        path = PurePath(source)
        return path.stem if path.suffix == ".py" else path.name.rpartition(".")[2]
    return PurePath(spec).stem if PurePath(spec).suffix else spec


def heatmap_name(job: ExplainJob, target: str, box: Box) -> str:
    """``method · target · model (· region)``, e.g. ``"Grad-CAM · prompt 'nuclei' · demo-vlm"``.

    The region is named unless it is the whole image; the image itself is in the metadata.
    """
    parts = [
        method_label(job.settings),
        target,
        model_label(job.spec, job.weights),
    ]
    if box.label != WHOLE_LAYER:
        parts.append(box.label)
    return SEPARATOR.join(parts)


def explained_target(result: RegionResult) -> str:
    """What a one-crop map explains, as the explanation says it (class, prompt, region).

    A class the user did not choose is marked "(top class)".
    """
    name = result.explanation.target_names[0]
    return name if result.settings.target is not None else f"{name} (top class)"


def heatmap_layer(result: RegionResult, layer: Image, job: ExplainJob) -> LayerDataTuple:
    """Return the layer-data tuple of one heatmap, at the map's own resolution.

    The map is shown as 0-1 of its range through a colormap whose low end is clear
    (``heatmap_style``); the raw range, model, weights and stack index are in the metadata.
    """
    placed = result.placed
    shown, raw = to_display(placed.cam)
    record = heatmap_record(result, layer, job, raw)
    kwargs = {
        "name": heatmap_name(job, explained_target(result), result.box),
        "colormap": heatmap_colormap(),
        "opacity": DEFAULT_OPACITY,
        "blending": "translucent",
        "contrast_limits": (0.0, 1.0),
        "interpolation2d": "linear",
        "metadata": record.to_metadata(),
        **placement_kwargs(layer, placed.stride, placed.origin),
    }
    return shown, kwargs, "image"


def annotations_layer(layer: Image) -> Shapes:
    """Return an empty 2-D Shapes layer placed like ``layer``, for drawing regions.

    Edges are drawn about 1/400 of the image wide, so they stay visible when zoomed out.
    """
    edge_width = max(2, round(max(layer.level_shapes[0][-2:]) / 400))
    return Shapes(
        ndim=2,
        name=ANNOTATIONS_NAME,
        scale=tuple(layer.scale[-2:]),
        translate=tuple(layer.translate[-2:]),
        units=tuple(layer.units[-2:]),
        edge_color="yellow",
        face_color="transparent",
        edge_width=edge_width,
    )
