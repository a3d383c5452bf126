"""``explain()``: one call from (model, image, settings) to an ``Explanation``.

``map_geometry`` gives the geometry of the map ``explain()`` would give, without running it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Unpack

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.augment import FLIPS, flipped_copies, mean_of_unflipped
from napari_gradcam.core.explain.collect import collect
from napari_gradcam.core.explain.context import LayerContext, Monitor
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.explain.finite import check_finite
from napari_gradcam.core.explain.hooks import (
    frozen_model,
    model_device,
    model_dtype,
    torchscript_message,
)
from napari_gradcam.core.explain.inputs import model_batch, model_parts
from napari_gradcam.core.explain.methods import get_method
from napari_gradcam.core.explain.methods.cam_method import CamMethod
from napari_gradcam.core.explain.methods.guided import has_relu_modules
from napari_gradcam.core.explain.methods.occlusion import OcclusionOptions
from napari_gradcam.core.explain.model_layers import (
    INPUT_LAYER,
    MapGeometry,
    ModelLayers,
    map_stride,
    model_layers,
)
from napari_gradcam.core.explain.targets import BoundTarget, bind_target
from napari_gradcam.core.settings import CommonKeywords, ExplainSettings


def explain(
    model: object,
    image: np.ndarray | torch.Tensor,
    settings: ExplainSettings | None = None,
    *,
    card: ModelCard | None = None,
    origin: Sequence[float] = (0.0, 0.0),
    monitor: Monitor | None = None,
    **common: Unpack[CommonKeywords],
) -> Explanation:
    """Explain what a model's output says about ``settings.target`` on one image or a batch.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The model. A ``LoadedModel`` (from ``load_model``) brings its model card, and a
        vision-language model its text tower (for ``Prompt`` targets).
    image : numpy.ndarray or torch.Tensor
        Pixels (H, W) or (H, W, C) of any common dtype, preprocessed with the card; or a float
        tensor (N, C, H, W) already preprocessed.
    settings : ExplainSettings, optional
        Method, layer, target, TTA, precision and the method's own options as one record
        (default: Grad-CAM of the top class at the default layer). The target is a class, or
        any ``core.targets`` kind the model's card allows (``card.output``).
    card : ModelCard, optional
        Overrides the card of a ``LoadedModel``; default card for a bare module.
    origin : sequence of float
        (y, x) of the image's top-left pixel in the coordinates of a larger image it was cut
        from; recorded in the result for placement.
    monitor : Monitor, optional
        Progress, cancel and memory budget of the long methods (steps: masked forwards,
        attention blocks).
    **common
        Fields of ``settings`` to set (they win over ``settings``): ``method``, ``layer`` (a
        module name or the module), ``target``, ``tta``, ``bfloat16`` and ``options``, e.g.
        ``explain(m, x, method="occlusion", options=OcclusionOptions(window=32))``.

    Returns
    -------
    Explanation
        The raw map at the layer's resolution with its placement, classes, scores and timings.

    Raises
    ------
    ValueError
        For bad input, or a method that cannot apply to this model or layer (before it runs).
    NonFiniteError
        A ``ValueError`` for NaN or infinite logits or map, naming the likely cause.
    ExplanationCancelled
        When ``monitor.should_stop()`` returned true; the model is left as it was.
    """
    start = time.perf_counter()
    unknown = sorted(set(common) - set(CommonKeywords.__annotations__))
    if unknown:
        raise TypeError(
            f"explain() takes no keyword {', '.join(unknown)}: a method's options go in "
            "options= (e.g. options=ng.OcclusionOptions(window=32)), progress, cancel and the "
            "memory budget in monitor=ng.Monitor(...)"
        )
    settings = (settings or ExplainSettings()).replace(**common)
    module, card = model_parts(model, card)
    cam_method = get_method(settings.method)
    _check_applies(cam_method, module)
    batch = model_batch(module, image, card)
    target = bind_target(settings.target, card, getattr(model, "text", None), batch.shape[-2:])
    layers = model_layers(model)
    found = _resolve_layer(layers, settings.layer, card, batch) if cam_method.uses_layer else None
    monitor = monitor or Monitor()
    monitor.check()
    times = [start, time.perf_counter()]
    inputs, groups = (flipped_copies(batch), len(FLIPS)) if settings.tta else (batch, 1)
    with frozen_model(module):
        context = collect(layers, inputs, cam_method, found, settings, target, groups, monitor)
        times.append(time.perf_counter())
        monitor.check()
        cam = cam_method.compute(context)
    cam = mean_of_unflipped(cam) if settings.tta else cam
    check_finite(context.logits, "the model's logits", module=module, card=card, batch=batch)
    check_finite(cam, f"the {cam_method.title} map", module=module, card=card, batch=batch)
    monitor.finish()
    times.append(time.perf_counter())
    single = not isinstance(image, torch.Tensor)
    return _explanation(cam, context, settings, target, single, origin, times)


def _check_applies(method: CamMethod, module: nn.Module) -> None:
    """Refuse, before running, a method that cannot work on this model, saying what to do."""
    if method.needs_hooks and isinstance(module, torch.jit.ScriptModule):
        raise ValueError(torchscript_message(method.title))
    if "guided" in method.needs and not has_relu_modules(module):
        raise ValueError(
            f"{method.title} guides the backward pass of nn.ReLU modules, and this model has "
            "none (ReLUs called as functions and other activations cannot be guided); use "
            "method='gradcam' or method='occlusion'"
        )


def _explanation(
    cam: torch.Tensor,
    context: LayerContext,
    settings: ExplainSettings,
    target: BoundTarget,
    single: bool,
    origin: Sequence[float],
    times: list[float],
) -> Explanation:
    """Assemble the result: the first ``len(cam)`` images' targets (TTA copies come after)."""
    method = get_method(settings.method)
    weights, scored = context.targets[: len(cam)], context.logits[: len(cam)]
    scores, probs = target.scores(scored, weights), target.probabilities(scored, weights)
    logits = target.summary_logits(scored, weights)
    cam_np = cam.float().cpu().numpy().astype(np.float32, copy=False)
    height, width = context.batch.shape[-2:]
    stride = method.stride(context) or map_stride(context.layout, (height, width), cam.shape[-2:])
    return Explanation(
        cam=cam_np[0] if single else cam_np,
        method=method.name,
        layer=context.layer_name or INPUT_LAYER,
        targets=target.indices(weights).cpu().numpy().astype(np.int64),
        target_names=target.names(weights),
        scores=scores.detach().float().cpu().numpy(),
        probabilities=probs.detach().float().cpu().numpy(),
        stride=stride,
        origin=(float(origin[0]), float(origin[1])),
        input_shape=(int(height), int(width)),
        timings={
            "preprocess": times[1] - times[0],
            "capture": times[2] - times[1],
            "method": times[3] - times[2],
            "total": times[3] - times[0],
        },
        tta=settings.tta,
        bfloat16=settings.bfloat16,
        logits=logits.detach().float().cpu().numpy(),
    )


def _resolve_layer(
    layers: ModelLayers, layer: str | nn.Module | None, card: ModelCard, batch: torch.Tensor
) -> tuple[str, nn.Module]:
    """Resolve the layer; a default is found by a dry run at the card's input size.

    Without a card size, or when the model refuses it, the dry run is at this input's size.
    """
    if card.input_size is not None:
        try:
            return layers.resolve(layer, default=card.default_layer, input_shape=card.probe_shape)
        except (RuntimeError, AssertionError):  # timm asserts its fixed input size
            pass
    try:
        return layers.resolve(layer, default=card.default_layer, input_shape=(1, *batch.shape[1:]))
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"the model failed to run on this input: {err}") from err


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

    A layer map's geometry is the target layer's output layout: one dry forward under
    inference mode, cached by a ``LoadedModel`` (``ModelLayers.layout``). Occlusion's comes
    from its grid settings and guided maps are the input's own size: no forward at all.

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
        layers = model_layers(model)
        shape = (1, card.in_channels, height, width)
        name, _ = layers.resolve(layer, default=card.default_layer, input_shape=shape)
        if "guided" not in cam_method.needs:
            layout = layers.layout(name, shape)
            return MapGeometry(name, layout.grid, map_stride(layout, (height, width), layout.grid))
    return MapGeometry(name, (height, width), (1.0, 1.0))  # guided maps: the input's grid


def _attention_geometry(
    module: nn.Module, method: CamMethod, input_chw: tuple[int, int, int]
) -> MapGeometry:
    """The patch grid and patch stride of an attention map; refused as ``explain`` refuses."""
    probe = torch.zeros((1, *input_chw), device=model_device(module), dtype=model_dtype(module))
    reader = method.reader(module, probe, method.options())
    stride = (float(reader.patch_size[0]), float(reader.patch_size[1]))
    return MapGeometry(reader.describe(), tuple(reader.grid), stride)
