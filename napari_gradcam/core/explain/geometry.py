"""A map's geometry (layer, shape, stride) for an input size, without running the method.

Tiling needs the map's cell size and shape before it lays the grid. A layer map's geometry
is the target layer's output shape: one dry forward under inference mode, cached per model,
layer and input shape. Occlusion's comes from its grid settings and guided maps are the
input's own size: no forward at all.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.batching import run_model
from napari_gradcam.core.explain.capture import (
    capture_layer,
    frozen_model,
    model_device,
    model_dtype,
    resolve_layer,
)
from napari_gradcam.core.explain.inputs import model_parts
from napari_gradcam.core.explain.layouts import Layout
from napari_gradcam.core.explain.methods import CamMethod, get_method
from napari_gradcam.core.explain.methods.occlusion import OcclusionOptions

INPUT_LAYER = "input"
"""``Explanation.layer`` of the methods that use no layer (guided backprop, occlusion)."""

_LAYOUTS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Layout]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class MapGeometry:
    """Where a method's map lies on an input of a given size.

    Attributes
    ----------
    layer : str
        The resolved target layer (``"input"`` for methods that use none).
    shape : tuple of int
        ``(h, w)`` of the map.
    stride : tuple of float
        ``(fy, fx)`` input pixels per map cell.
    """

    layer: str
    shape: tuple[int, int]
    stride: tuple[float, float]


def map_geometry(
    model: object,
    input_size: Sequence[int],
    *,
    method: str = "gradcam",
    layer: str | nn.Module | None = None,
    card: ModelCard | None = None,
    options: object = None,
) -> MapGeometry:
    """Return the geometry of the map ``explain()`` would give for an input of ``input_size``.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier.
    input_size : sequence of int
        ``(height, width)`` of the input in pixels.
    method, layer, card, options
        As in ``explain``.

    Returns
    -------
    MapGeometry
        Equal to the explanation's ``layer``, ``cam.shape`` and ``stride``.
    """
    module, card = model_parts(model, card)
    height, width = (int(n) for n in input_size)
    cam_method = get_method(method)
    if not cam_method.needs_hooks:  # occlusion: its grid
        _, step = (options or OcclusionOptions()).grid((height, width))
        cells = (math.ceil(height / step), math.ceil(width / step))
        return MapGeometry(INPUT_LAYER, cells, (float(step), float(step)))
    if "attention" in cam_method.needs:
        return _attention_geometry(module, cam_method, (card.in_channels, height, width))
    name = INPUT_LAYER
    if cam_method.uses_layer:
        shape = (1, card.in_channels, height, width)
        name, found = resolve_layer(module, layer, default=card.default_layer, input_shape=shape)
        if "guided" not in cam_method.needs:
            layout = _layer_layout(module, name, found, shape)
            return MapGeometry(name, layout.grid, map_stride(layout, (height, width), layout.grid))
    return MapGeometry(name, (height, width), (1.0, 1.0))  # guided maps: the input's grid


def _attention_geometry(
    module: nn.Module, method: CamMethod, input_chw: tuple[int, int, int]
) -> MapGeometry:
    """The patch grid and patch stride of an attention map; refused as ``explain`` refuses."""
    from napari_gradcam.core.explain.attention_capture import attention_modules

    probe = torch.zeros((1, *input_chw), device=model_device(module), dtype=model_dtype(module))
    reader = method.reader(module, probe, method.options())
    names = [name for name, _ in attention_modules(module)]
    stride = (float(reader.patch_size[0]), float(reader.patch_size[1]))
    return MapGeometry(reader.describe(names), tuple(reader.grid), stride)


def _layer_layout(
    module: nn.Module, name: str, layer: nn.Module, input_shape: tuple[int, ...]
) -> Layout:
    """The layout (map grid, declared stride) of ``layer``'s output for ``input_shape``.

    One cached dry forward; the layout (convolutional, channels-last or tokens) is decided
    as ``explain`` decides it, so a transformer's map gets its patch grid and patch stride.
    """
    from napari_gradcam.core.explain.gradient_pass import layout_check

    per_model = _LAYOUTS.setdefault(module, {})
    key = (name, input_shape)
    if key not in per_model:
        zeros = torch.zeros(input_shape, device=model_device(module), dtype=model_dtype(module))
        check = layout_check(module, name, zeros)
        with (
            frozen_model(module),
            torch.inference_mode(),
            capture_layer(layer, name, with_grad=False, layout_of=check) as captured,
        ):
            run_model(module, zeros)
        if captured.activation is None or captured.layout is None:
            raise ValueError(f"layer {name!r} did not run in the forward pass; choose another")
        per_model[key] = captured.layout
    return per_model[key]


def map_stride(
    layout: Layout | None, input_hw: tuple[int, int], map_hw: tuple[int, int]
) -> tuple[float, float]:
    """Input pixels per map cell, (fy, fx).

    Declared by the layer's layout (a transformer's patch size, times its stage's
    downsampling), exact for any input size; else inferred from the sizes (``infer_stride``).
    """
    if layout is not None and layout.stride is not None and tuple(map_hw) == layout.grid:
        return layout.stride
    return (infer_stride(input_hw[0], map_hw[0]), infer_stride(input_hw[1], map_hw[1]))


def infer_stride(input_size: int, map_size: int) -> float:
    """Input pixels per map cell along one axis.

    Networks that pool by an integer factor ``f`` give ``floor(n / f)`` or ``ceil(n / f)``
    cells; then ``f`` is exact. Otherwise the ratio ``n / m`` is returned.

    Examples
    --------
    >>> infer_stride(100, 12), infer_stride(224, 7), infer_stride(10, 4)
    (8.0, 32.0, 2.5)
    """
    factor = max(round(input_size / map_size), 1)
    if map_size in (input_size // factor, -(-input_size // factor)):
        return float(factor)
    return input_size / map_size
