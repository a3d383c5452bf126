"""``explain()``: one call from (model, image, method, layer, target) to an ``Explanation``."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.capture import (
    Captured,
    capture_layer,
    frozen_model,
    model_device,
    model_dtype,
    resolve_layer,
)
from napari_gradcam.core.context import LayerContext
from napari_gradcam.core.explanation import Explanation
from napari_gradcam.core.methods import get_method
from napari_gradcam.core.preprocess import check_tensor, to_batch
from napari_gradcam.core.targets import Target, as_logits, resolve_targets, target_scores
from napari_gradcam.models.card import ModelCard


def explain(
    model: object,
    image: np.ndarray | torch.Tensor,
    *,
    method: str = "gradcam",
    layer: str | nn.Module | None = None,
    target: Target = None,
    card: ModelCard | None = None,
    origin: Sequence[float] = (0.0, 0.0),
) -> Explanation:
    """Explain a classifier's decision on one image or a batch.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier. A ``LoadedModel`` (from ``load_model``) brings its model card.
    image : numpy.ndarray or torch.Tensor
        Pixels (H, W) or (H, W, C) of any common dtype, preprocessed with the card; or a float
        tensor (N, C, H, W) already preprocessed.
    method : str
        A key of ``METHODS``.
    layer : str or torch.nn.Module, optional
        Target layer by module name or module; default: the card's ``default_layer``, else the
        last layer with a spatial output.
    target : int, str or sequence, optional
        Class to explain (index or name), one per image, or ``None`` for the top class.
    card : ModelCard, optional
        Overrides the card of a ``LoadedModel``; default card for a bare module.
    origin : sequence of float
        (y, x) of the image's top-left pixel in the coordinates of a larger image it was cut
        from; recorded in the result for placement.

    Returns
    -------
    Explanation
        The raw map at the layer's resolution with its placement, classes, scores and timings.
    """
    start = time.perf_counter()
    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected a torch.nn.Module or LoadedModel, got {type(model).__name__}")
    card = card or getattr(model, "card", None) or ModelCard()
    cam_method = get_method(method)
    batch = _prepare(image, card, module)
    name, target_module = _resolve_layer(module, layer, card, batch)
    prepared = time.perf_counter()
    context = _capture(module, batch, name, target_module, target, card, cam_method.needs)
    captured = time.perf_counter()
    cam = cam_method.compute(context)
    targets, scores, probs = context.targets, *target_scores(context.logits, context.targets)
    cam_np = cam.float().cpu().numpy().astype(np.float32, copy=False)
    height, width = batch.shape[-2:]
    done = time.perf_counter()
    return Explanation(
        cam=cam_np[0] if _is_single(image) else cam_np,
        method=method,
        layer=name,
        targets=targets.cpu().numpy().astype(np.int64),
        target_names=tuple(card.class_name(int(t)) for t in targets),
        scores=scores.detach().float().cpu().numpy(),
        probabilities=probs.detach().float().cpu().numpy(),
        stride=(infer_stride(height, cam.shape[-2]), infer_stride(width, cam.shape[-1])),
        origin=(float(origin[0]), float(origin[1])),
        input_shape=(int(height), int(width)),
        timings={
            "preprocess": prepared - start,
            "capture": captured - prepared,
            "method": done - captured,
            "total": done - start,
        },
    )


def _is_single(image: np.ndarray | torch.Tensor) -> bool:
    return not isinstance(image, torch.Tensor)


def _prepare(image: np.ndarray | torch.Tensor, card: ModelCard, module: nn.Module) -> torch.Tensor:
    device, dtype = model_device(module), model_dtype(module)
    if isinstance(image, torch.Tensor):
        check_tensor(image)
        return image.detach().to(device=device, dtype=dtype)
    return to_batch(image, card, device).to(dtype)


def _resolve_layer(
    module: nn.Module, layer: str | nn.Module | None, card: ModelCard, batch: torch.Tensor
) -> tuple[str, nn.Module]:
    """Resolve the layer; a default is found by a dry run at the card's size, else this input's."""
    try:
        return resolve_layer(
            module, layer, default=card.default_layer, input_shape=card.probe_shape
        )
    except RuntimeError:
        pass
    try:
        return resolve_layer(
            module, layer, default=card.default_layer, input_shape=(1, *batch.shape[1:])
        )
    except RuntimeError as err:
        raise ValueError(f"the model failed to run on this input: {err}") from err


def _capture(
    module: nn.Module,
    batch: torch.Tensor,
    name: str,
    layer: nn.Module,
    target: Target,
    card: ModelCard,
    needs: str,
) -> LayerContext:
    """Run the model once, capturing the layer (and its gradients when ``needs`` them)."""
    with frozen_model(module):
        if needs == "gradients":
            activations, gradients, logits, targets = _forward_backward(
                module, batch, layer, name, target, card
            )
        else:
            with torch.inference_mode(), capture_layer(layer, name, with_grad=False) as captured:
                logits = _run(module, batch)
            activations, gradients = _captured_activation(captured, name), None
            targets = resolve_targets(logits, target, card)
    return LayerContext(module, batch, name, layer, activations, gradients, logits, targets)


def _run(module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    try:
        return as_logits(module(batch))
    except RuntimeError as err:
        raise ValueError(f"the model failed to run on this input: {err}") from err


def _captured_activation(captured: Captured, name: str) -> torch.Tensor:
    if captured.activation is None:
        raise ValueError(f"layer {name!r} did not run in the forward pass; choose another")
    return captured.activation


def _forward_backward(
    module: nn.Module,
    batch: torch.Tensor,
    layer: nn.Module,
    name: str,
    target: Target,
    card: ModelCard,
) -> tuple[torch.Tensor, ...]:
    """The fast path: graph only from the target layer to the score; nothing kept after."""
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        capture_layer(layer, name) as captured,
    ):
        logits = _run(module, batch)
        activation = _captured_activation(captured, name)
        targets = resolve_targets(logits, target, card)
        scores, _ = target_scores(logits, targets)
        if not scores.requires_grad:
            raise ValueError(_off_path_message(name))
        (gradients,) = torch.autograd.grad(scores.sum(), activation, allow_unused=True)
    if gradients is None:
        raise ValueError(_off_path_message(name))
    return activation.detach(), gradients, logits.detach(), targets


def _off_path_message(name: str) -> str:
    return (
        f"the output does not depend on layer {name!r}; choose a layer on the path to the "
        "classifier"
    )


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
