"""What each layer sees: its feature maps ranked by their part in the decision; layer sweeps.

A channel's contribution is its Grad-CAM weight (the spatial mean of the target score's
gradient, Selvaraju et al., ICCV 2017) times its mean activation, scaled by the map's cell
count: for a network ending in global average pooling and a linear layer this is exactly the
channel's share of the logit, ``w_ck * mean(A_k)`` (Zhou et al., CVPR 2016), so the
contributions plus the bias add up to the score.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.capture import (
    candidate_layers,
    capture_layer,
    frozen_model,
    model_device,
    model_dtype,
    resolve_layer,
)
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.explain.geometry import infer_stride
from napari_gradcam.core.explain.inputs import model_batch, model_parts
from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.explain.sharing import owned_forward_hook
from napari_gradcam.core.explain.targets import Target, as_logits, resolve_targets, target_scores


@dataclass(frozen=True)
class FeatureStack:
    """A layer's activations for one image, channels sorted by contribution (largest first).

    Attributes
    ----------
    activations : numpy.ndarray
        float32 (C, h, w): channel ``i`` is channel ``channels[i]`` of the layer.
    channels : numpy.ndarray
        int64 (C,): the layer's channel index of each row.
    contributions : numpy.ndarray
        float32 (C,): Grad-CAM weight x mean activation x cells, per row (logit share).
    layer : str
        The layer's module name.
    target : int
        The class whose score the contributions refer to.
    target_name : str
        Its name.
    stride : tuple of float
        (fy, fx) input pixels per cell.
    origin : tuple of float
        (y, x) of the input's top-left pixel in a larger image.
    """

    activations: np.ndarray
    channels: np.ndarray
    contributions: np.ndarray
    layer: str
    target: int
    target_name: str
    stride: tuple[float, float]
    origin: tuple[float, float]

    def top(self, count: int = 5) -> list[tuple[int, float]]:
        """``(channel, contribution)`` of the ``count`` largest contributors."""
        pairs = zip(self.channels[:count], self.contributions[:count], strict=True)
        return [(int(c), float(s)) for c, s in pairs]


def feature_stack(
    model: object,
    image: np.ndarray | torch.Tensor,
    *,
    layer: str | None = None,
    target: Target = None,
    card: ModelCard | None = None,
    origin: Sequence[float] = (0.0, 0.0),
) -> FeatureStack:
    """Return a layer's activations ordered by their contribution to the target class.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier.
    image : numpy.ndarray or torch.Tensor
        Pixels (H, W[, C]), or one preprocessed image (1, C, H, W).
    layer : str, optional
        Module name; default: the card's default layer, else the last spatial layer.
    target : int or str, optional
        Class; default: the predicted class.
    card : ModelCard, optional
        Overrides the model's card.
    origin : sequence of float
        (y, x) of the image's top-left pixel, recorded for placement.

    Returns
    -------
    FeatureStack
    """
    module, card = model_parts(model, card)
    batch = model_batch(module, image, card)[:1]
    name, layer_module = resolve_layer(
        module, layer, default=card.default_layer, input_shape=(1, *batch.shape[1:])
    )
    activations, gradients, target_index = _activations_and_gradients(
        module, batch, name, layer_module, target, card
    )
    contributions = gradients.sum(dim=(1, 2)) * activations.mean(dim=(1, 2))
    order = torch.argsort(contributions, descending=True, stable=True)
    height, width = batch.shape[-2:]
    return FeatureStack(
        activations=activations[order].float().cpu().numpy(),
        channels=order.cpu().numpy().astype(np.int64),
        contributions=contributions[order].float().cpu().numpy(),
        layer=name,
        target=target_index,
        target_name=card.class_name(target_index),
        stride=(
            infer_stride(height, activations.shape[-2]),
            infer_stride(width, activations.shape[-1]),
        ),
        origin=(float(origin[0]), float(origin[1])),
    )


def _activations_and_gradients(
    module: nn.Module,
    batch: torch.Tensor,
    name: str,
    layer: nn.Module,
    target: Target,
    card: ModelCard,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Activations (C, h, w) and score gradients at ``layer`` for the first image, and the class."""
    with (
        frozen_model(module),
        torch.inference_mode(False),
        torch.enable_grad(),
        capture_layer(layer, name) as captured,
    ):
        logits = as_logits(module(batch))
        targets = resolve_targets(logits, target, card)
        scores, _ = target_scores(logits, targets)
        if captured.activation is None or not scores.requires_grad:
            raise ValueError(f"the class score does not depend on layer {name!r}; choose another")
        (gradients,) = torch.autograd.grad(scores.sum(), captured.activation)
    return captured.activation.detach()[0], gradients[0], int(targets[0])


def sweep_layers(
    model: object, input_shape: Sequence[int] | None = None, count: int = 4
) -> list[str]:
    """The deepest layer at each of the network's last ``count`` resolutions, shallow first.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier.
    input_shape : sequence of int, optional
        (1, C, H, W) of a dry-run input; default from the card.
    count : int
        How many resolutions (one layer each), counted from the output backwards.

    Examples
    --------
    >>> sweep_layers(ng.load_model("demo"))  # doctest: +SKIP
    ['features.2', 'features.6', 'features.10', 'features']
    """
    module, card = model_parts(model)
    shape = tuple(input_shape or card.probe_shape)
    names = candidate_layers(module, shape)
    sizes = _output_sizes(module, names, shape)
    deepest = {sizes[name]: name for name in names}
    return list(deepest.values())[-count:]


def _output_sizes(
    module: nn.Module, names: list[str], input_shape: tuple[int, ...]
) -> dict[str, tuple[int, int]]:
    """(h, w) of the output of each named module in one dry run on zeros."""
    sizes: dict[str, tuple[int, int]] = {}

    def record(name: str, output: torch.Tensor) -> None:
        sizes[name] = tuple(output.shape[-2:])

    modules = dict(module.named_modules())
    hooks = [
        owned_forward_hook(modules[name], lambda _m, _i, out, name=name: record(name, out))
        for name in names
    ]
    zeros = torch.zeros(input_shape, device=model_device(module), dtype=model_dtype(module))
    try:
        with frozen_model(module), torch.inference_mode():
            module(zeros)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def layer_sweep(
    model: object,
    image: np.ndarray | torch.Tensor,
    layers: Sequence[str],
    *,
    method: str = "gradcam",
    target: Target = None,
    card: ModelCard | None = None,
    origin: Sequence[float] = (0.0, 0.0),
) -> Iterator[Explanation]:
    """Explain the same class with the same method at each of ``layers``, one at a time.

    The class is the one asked for, else the class predicted at the first layer, so that
    every map answers the same question. Each ``Explanation`` has its own stride (placement).
    """
    for name in layers:
        explanation = explain(
            model, image, method=method, layer=name, target=target, card=card, origin=origin
        )
        target = int(explanation.targets[0])
        yield explanation
