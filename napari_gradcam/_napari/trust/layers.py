"""napari layers made by the trust & compare dock, each placed on its image like a heatmap.

Maps (layer sweep, methods x classes) become ordinary heatmap layers, with the heatmap facts
in their metadata, so that they can be checked in turn. Feature stacks (C, h, w) and signed
class contrasts get their own metadata keys: they are not heatmaps of one class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image

from napari_gradcam._napari.explain.job import ExplainJob, RegionResult
from napari_gradcam._napari.plane import Plane
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.result_layers import LayerDataTuple, heatmap_layer, placement_kwargs
from napari_gradcam._napari.trust.job import TrustOutcome

if TYPE_CHECKING:
    from napari_gradcam.core.explain.explanation import Explanation
    from napari_gradcam.core.trust.contrast import ClassContrast
    from napari_gradcam.core.trust.features import FeatureStack

FEATURES_KEY = "napari_gradcam_features"
CONTRAST_KEY = "napari_gradcam_contrast"
TRUST_KEY = "napari_gradcam_trust"
NO_TISSUE = " [no tissue]"
BLANK_OPACITY = 0.15
"""Opacity of a map of a blank (glass-only) tile: visible, but not a confident overlay."""


def level0_stride(stride: tuple[float, float], outcome: TrustOutcome) -> tuple[float, float]:
    """A map's stride in level-0 pixels: its stride on the crop times the crop's downsample."""
    return tuple(float(f * d) for f, d in zip(stride, outcome.downsample, strict=True))


def stack_placement(placement: dict[str, Any]) -> dict[str, Any]:
    """Extend 2-D placement keyword arguments with a leading (channel) axis of unit scale."""
    stacked = {
        "scale": (1.0, *placement["scale"]),
        "translate": (0.0, *placement["translate"]),
        "units": ("pixel", *placement["units"]),
    }
    for key, size in (("rotate", 3), ("shear", 3), ("affine", 4)):
        if key in placement:
            matrix = np.eye(size)
            matrix[1:, 1:] = placement[key]
            stacked[key] = matrix
    return stacked


def feature_layer(stack: FeatureStack, outcome: TrustOutcome, image: Image) -> LayerDataTuple:
    """The (C, h, w) activations, each channel divided by its maximum, largest contributor first.

    The channel axis leads, so napari's slider scrolls the channels (labelled "channel" over
    a 2-D image; over a stack it shares the slider of the image's leading axis); the last two
    axes lie on the image like the heatmap.
    """
    peaks = stack.activations.max(axis=(1, 2), keepdims=True)
    data = np.divide(
        stack.activations, peaks, out=np.zeros_like(stack.activations), where=peaks > 0
    )
    placement = placement_kwargs(image, level0_stride(stack.stride, outcome), outcome.crop_origin)
    facts = {
        "layer": stack.layer,
        "target_name": stack.target_name,
        "channels": stack.channels.tolist(),
        "contributions": stack.contributions.tolist(),
        "image_layer": image.name,
    }
    kwargs = {
        "name": _blank_name(f"{image.name} features {stack.layer} ({stack.target_name})", outcome),
        "colormap": "inferno",
        "contrast_limits": (0.0, 1.0),
        "opacity": BLANK_OPACITY if outcome.blank else 0.7,
        "blending": "translucent",
        "interpolation2d": "linear",
        "metadata": {FEATURES_KEY: facts},
        **stack_placement(placement),
    }
    if image.ndim == 2:
        kwargs["axis_labels"] = ("channel", *image.axis_labels)
    return data.astype(np.float32), kwargs, "image"


def map_layer(
    explanation: Explanation,
    outcome: TrustOutcome,
    image: Image,
    source: HeatmapRecord,
    plane: Plane | None,
) -> LayerDataTuple:
    """A heatmap layer of one map of the heatmap's crop, named by method, class and layer."""
    result = RegionResult.on_crop(
        source.box, explanation, outcome.crop_origin, outcome.downsample, source.level
    )
    job = ExplainJob(source.spec, source.weights, plane=plane)
    data, kwargs, kind = heatmap_layer(result, image, job)
    at = f" @ {explanation.layer}" if explanation.layer else ""
    name = f"{image.name} {explanation.method} {explanation.target_names[0]}{at}"
    kwargs["name"] = _blank_name(name, outcome)
    if outcome.blank:
        kwargs["opacity"] = BLANK_OPACITY
    return data, kwargs, kind


def contrast_layer(contrast: ClassContrast, outcome: TrustOutcome, image: Image) -> LayerDataTuple:
    """The signed map of class a minus class b: red for a, blue for b, symmetric limits."""
    first = contrast.first
    placement = placement_kwargs(image, level0_stride(first.stride, outcome), outcome.crop_origin)
    facts = {
        "first": first.target_names[0],
        "second": contrast.second.target_names[0],
        "method": first.method,
        "layer": first.layer,
        "image_layer": image.name,
    }
    kwargs = {
        "name": _blank_name(f"{image.name} {first.method} {contrast.name}", outcome),
        "colormap": "coolwarm",
        "contrast_limits": (-contrast.limit, contrast.limit),
        "opacity": BLANK_OPACITY if outcome.blank else 0.6,
        "blending": "translucent",
        "interpolation2d": "linear",
        "metadata": {CONTRAST_KEY: facts},
        **placement,
    }
    return contrast.difference.astype(np.float32), kwargs, "image"


def _blank_name(name: str, outcome: TrustOutcome) -> str:
    return name + NO_TISSUE if outcome.blank else name
