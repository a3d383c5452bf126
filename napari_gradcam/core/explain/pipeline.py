"""``explain()``: one call from (model, image, method, layer, target) to an ``Explanation``.

``map_geometry`` gives the geometry of the map ``explain()`` would give, without running it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.augment import FLIPS, flipped_copies, mean_of_unflipped
from napari_gradcam.core.explain.collect import collect
from napari_gradcam.core.explain.context import (
    Baseline,
    LayerContext,
    MethodSettings,
    Monitor,
    ProgressFn,
    StopFn,
)
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.explain.finite import check_finite
from napari_gradcam.core.explain.hooks import (
    attention_modules,
    frozen_model,
    model_device,
    model_dtype,
    torchscript_message,
)
from napari_gradcam.core.explain.inputs import model_batch, model_parts
from napari_gradcam.core.explain.method_options import check_options
from napari_gradcam.core.explain.methods import CamMethod, check_precision, get_method
from napari_gradcam.core.explain.methods.guided import has_relu_modules
from napari_gradcam.core.explain.methods.occlusion import grid_settings
from napari_gradcam.core.explain.model_layers import (
    INPUT_LAYER,
    MapGeometry,
    ModelLayers,
    map_stride,
    model_layers,
)
from napari_gradcam.core.explain.targets import Target, target_scores
from napari_gradcam.core.settings import ExplainSettings


def explain(
    model: object,
    image: np.ndarray | torch.Tensor,
    settings: ExplainSettings | None = None,
    *,
    method: str = "gradcam",
    layer: str | nn.Module | None = None,
    target: Target = None,
    card: ModelCard | None = None,
    origin: Sequence[float] = (0.0, 0.0),
    tta: bool = False,
    memory_budget_mb: float | None = None,
    occlusion_window: int | None = None,
    occlusion_stride: int | None = None,
    occlusion_baseline: Baseline = "blur",
    bfloat16: bool = False,
    discard_ratio: float = 0.0,
    attention_head: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Explanation:
    """Explain a classifier's decision on one image or a batch.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier. A ``LoadedModel`` (from ``load_model``) brings its model card.
    image : numpy.ndarray or torch.Tensor
        Pixels (H, W) or (H, W, C) of any common dtype, preprocessed with the card; or a float
        tensor (N, C, H, W) already preprocessed.
    settings : ExplainSettings, optional
        Method, layer, target, TTA, precision and the method's options as one record; when
        given, it replaces the keywords of the same names.
    method : str
        A key of ``METHODS``.
    layer : str or torch.nn.Module, optional
        Target layer by module name or module; default: the card's ``default_layer``, else the
        last layer with a spatial output. Ignored by methods that use no layer.
    target : int, str or sequence, optional
        Class to explain (index or name), one per image, or ``None`` for the top class.
    card : ModelCard, optional
        Overrides the card of a ``LoadedModel``; default card for a bare module.
    origin : sequence of float
        (y, x) of the image's top-left pixel in the coordinates of a larger image it was cut
        from; recorded in the result for placement.
    tta : bool
        Test-time augmentation: explain the image and its horizontal, vertical and double
        flips (one batch, same target class), flip the maps back and average them.
    memory_budget_mb : float, optional
        Memory limit for the batched masked forwards of Score-CAM, Ablation-CAM and occlusion;
        default: chunks of about 96 MB (at least one forward).
    occlusion_window, occlusion_stride : int, optional
        Occluding square's side and grid step in input pixels (the step is the map's stride).
    occlusion_baseline : {"blur", "mean"}
        What hides the occluded square: the blurred image or the normalisation mean.
    bfloat16 : bool
        Run the masked forwards of Score-CAM and occlusion in bfloat16 on a copy of the
        model: about 2x faster on CPUs with AVX-512 BF16 or AMX and on recent GPUs, with the
        scores rounded to about three significant digits (the map is then close to, not
        equal to, the float32 one). Off by default; other methods refuse it.
    discard_ratio : float
        Attention rollout: the share of each row's weakest attention weights dropped in every
        block (0, the default, is the paper's rollout). Other methods refuse a non-zero value.
    attention_head : int, optional
        Class-token attention (``method="attention"``): one head's map; default the mean of
        the heads. Other methods refuse a head.
    progress : callable, optional
        ``progress(done, total)`` during long methods (steps: masked forwards, attention
        blocks).
    should_stop : callable, optional
        Asked between steps; returning true raises ``ExplanationCancelled``.

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
        When ``should_stop()`` returned true; the model is left as it was.
    """
    start = time.perf_counter()
    if settings is not None:
        method, layer, target = settings.method, settings.layer, settings.target
        tta, bfloat16 = settings.tta, settings.bfloat16
        discard_ratio = settings.options.discard_ratio
        attention_head = settings.options.attention_head
    module, card = model_parts(model, card)
    cam_method = get_method(method)
    settings = MethodSettings(
        memory_budget_mb,
        occlusion_window,
        occlusion_stride,
        occlusion_baseline,
        bfloat16,
        discard_ratio,
        attention_head,
    )
    _check_applies(cam_method, module, bfloat16)
    check_options(method, discard_ratio, attention_head)
    batch = model_batch(module, image, card)
    layers = model_layers(model)
    found = _resolve_layer(layers, layer, card, batch) if cam_method.uses_layer else None
    monitor = Monitor(progress, should_stop)
    monitor.check()
    times = [start, time.perf_counter()]
    inputs, groups = (flipped_copies(batch), len(FLIPS)) if tta else (batch, 1)
    with frozen_model(module):
        context = collect(
            layers,
            inputs,
            cam_method,
            found,
            target,
            card,
            groups=groups,
            settings=settings,
            monitor=monitor,
        )
        times.append(time.perf_counter())
        monitor.check()
        cam = cam_method.compute(context)
    cam = mean_of_unflipped(cam) if tta else cam
    check_finite(context.logits, "the model's logits", module=module, card=card, batch=batch)
    check_finite(cam, f"the {cam_method.title} map", module=module, card=card, batch=batch)
    monitor.finish()
    times.append(time.perf_counter())
    single = not isinstance(image, torch.Tensor)
    return _explanation(cam, context, cam_method, card, single, origin, times, tta)


def _check_applies(method: CamMethod, module: nn.Module, bfloat16: bool) -> None:
    """Refuse, before running, a method that cannot work on this model, saying what to do."""
    check_precision(method, bfloat16)
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
    method: CamMethod,
    card: ModelCard,
    single: bool,
    origin: Sequence[float],
    times: list[float],
    tta: bool,
) -> Explanation:
    """Assemble the result: the first ``len(cam)`` images' targets (TTA copies come after)."""
    targets, logits = context.targets[: len(cam)], context.logits[: len(cam)]
    scores, probs = target_scores(logits, targets)
    cam_np = cam.float().cpu().numpy().astype(np.float32, copy=False)
    height, width = context.batch.shape[-2:]
    stride = method.stride(context) or map_stride(context.layout, (height, width), cam.shape[-2:])
    return Explanation(
        cam=cam_np[0] if single else cam_np,
        method=method.name,
        layer=context.layer_name or INPUT_LAYER,
        targets=targets.cpu().numpy().astype(np.int64),
        target_names=tuple(card.class_name(int(t)) for t in targets),
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
        tta=tta,
        bfloat16=context.settings.bfloat16,
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
    occlusion_window: int | None = None,
    occlusion_stride: int | None = None,
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
    method, layer, card, occlusion_window, occlusion_stride
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
        _, step = grid_settings((height, width), occlusion_window, occlusion_stride)
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
    reader = method.attention_reader(module, probe, MethodSettings())
    names = [name for name, _ in attention_modules(module)]
    stride = (float(reader.patch_size[0]), float(reader.patch_size[1]))
    return MapGeometry(reader.describe(names), tuple(reader.grid), stride)
