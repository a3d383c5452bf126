"""What each layer sees: its feature maps ranked by their part in the decision; layer sweeps.

A channel's contribution is its Grad-CAM weight (the spatial mean of the target score's
gradient, Selvaraju et al., ICCV 2017) times its mean activation, scaled by the map's cell
count: for a network ending in global average pooling and a linear layer this is exactly the
channel's share of the logit, ``w_ck * mean(A_k)`` (Zhou et al., CVPR 2016), so the
contributions plus the bias add up to the score. Elsewhere (a class-token head) it is the
same Grad-CAM weighting, which ranks the channels as Grad-CAM weighs them.

Every layout ``explain`` reads works (``model_layers``); a token layer's prefix tokens are
dropped and its patch tokens become each channel's (h, w) patch grid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.explain.gradient_pass import layer_gradients
from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.core.explain.inputs import model_batch, model_parts
from napari_gradcam.core.explain.layout import Layout
from napari_gradcam.core.explain.model_layers import (
    ModelLayers,
    map_stride,
    model_layers,
    vit_facts,
)
from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.explain.targets import bind_target
from napari_gradcam.core.targets import Target


@dataclass(frozen=True)
class FeatureStack:
    """A layer's activations for one image, channels sorted by contribution (largest first).

    Attributes
    ----------
    activations : numpy.ndarray
        float32 (C, h, w): channel ``i`` is channel ``channels[i]`` of the layer, on the
        layer's map grid (a transformer's patch grid, prefix tokens dropped).
    channels : numpy.ndarray
        int64 (C,): the layer's channel index of each row.
    contributions : numpy.ndarray
        float32 (C,): Grad-CAM weight x mean activation x cells, per row (logit share).
    layer : str
        The layer's module name.
    target : int
        The class whose score the contributions refer to.
    stride : tuple of float
        (fy, fx) input pixels per cell (a transformer's patch size).
    origin : tuple of float
        (y, x) of the input's top-left pixel in a larger image.
    layout : str
        How the layer holds its map, for people: e.g. ``"7x7"``, ``"NHWC 7x7"``,
        ``"tokens 14x14"`` (``Layout.label``).
    prefix_tokens : int
        Tokens of the layer left out of the maps (class, distillation, registers).
    """

    activations: np.ndarray
    channels: np.ndarray
    contributions: np.ndarray
    layer: str
    target: int
    target_name: str
    stride: tuple[float, float]
    origin: tuple[float, float]
    layout: str = ""
    prefix_tokens: int = 0

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
        Module name; default: the card's default layer, else the default of ``explain``.
    target : Target, optional
        What the contributions are to (a class, several, a prompt, a region); default: the
        predicted class.
    origin : sequence of float
        (y, x) of the image's top-left pixel, recorded for placement.

    Raises ValueError for a layer without a map whose layout can be determined, or whose map
    (patch tokens) the class score does not depend on; the message says what to do.
    """
    module, card = model_parts(model, card)
    batch = model_batch(module, image, card)[:1]
    layers = model_layers(model)
    found = layers.resolve(layer, default=card.default_layer, input_shape=(1, *batch.shape[1:]))
    bound = bind_target(target, card, getattr(model, "text", None), batch.shape[-2:])
    with frozen_model(module):
        captured, gradients, _, weights = layer_gradients(layers, batch, found, bound)
    layout: Layout = captured.layout
    activations = layout.to_nchw(captured.activation)[0]
    gradients = layout.to_nchw(gradients)[0]
    contributions = gradients.sum(dim=(1, 2)) * activations.mean(dim=(1, 2))
    order = torch.argsort(contributions, descending=True, stable=True)
    return FeatureStack(
        activations=activations[order].float().cpu().numpy(),
        channels=order.cpu().numpy().astype(np.int64),
        contributions=contributions[order].float().cpu().numpy(),
        layer=found[0],
        target=int(bound.indices(weights)[0]),
        target_name=bound.names(weights)[0],
        stride=map_stride(layout, tuple(batch.shape[-2:]), tuple(activations.shape[-2:])),
        origin=(float(origin[0]), float(origin[1])),
        layout=layout.label(),
        prefix_tokens=layout.prefix_tokens,
    )


def sweep_layers(
    model: object, input_shape: Sequence[int] | None = None, count: int = 4
) -> list[str]:
    """Layers to explain side by side, shallow first, ending at the deepest one.

    A convolutional network: the deepest layer at each of its last ``count`` resolutions. A
    transformer keeps one patch grid through its blocks, so: ``count`` layers evenly spaced
    in depth among those in the default layer's place in each block (else of its type) whose
    patch tokens reach the output, ending at the default layer (e.g. the ``norm1`` of every
    block of a class-token ViT).

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier.
    input_shape : sequence of int, optional
        (1, C, H, W) of a dry-run input; default from the card.

    Examples
    --------
    >>> sweep_layers(ng.load_model("demo"))  # doctest: +SKIP
    ['features.2', 'features.6', 'features.10', 'features']
    >>> sweep_layers(ng.load_model("demo-vit"))  # doctest: +SKIP
    ['blocks.0.norm1', 'blocks.1.norm1', 'blocks.2.norm1']
    """
    module, card = model_parts(model)
    layers = model_layers(model)
    shape = tuple(input_shape or card.probe_shape)
    if vit_facts(module) is not None:
        return _transformer_sweep(layers, card.default_layer, shape, count)
    deepest = {layout.grid: name for name, layout in layers.candidates(shape).items()}
    return list(deepest.values())[-count:]


def _transformer_sweep(
    layers: ModelLayers, default: str | None, shape: tuple[int, ...], count: int
) -> list[str]:
    """``count`` evenly spaced reaching layers in the default layer's role, ending at it."""
    module = layers.module
    last = default or layers.default(shape)
    if last is None:
        return []
    reaching = layers.reaching(shape)
    alike = [name for name in reaching if _same_role(name, last)]
    if len(alike) < 2:  # e.g. a final norm: fall back to layers of its type
        kind = type(module.get_submodule(last))
        alike = [name for name in reaching if type(module.get_submodule(name)) is kind]
    alike = alike[: alike.index(last) + 1] if last in alike else [last]
    picks = np.linspace(0, len(alike) - 1, min(count, len(alike))).round().astype(int)
    return [alike[index] for index in dict.fromkeys(picks.tolist())]


def _same_role(name: str, other: str) -> bool:
    """Whether two layer names differ only in their block indices (``blocks.0.norm1``)."""
    parts, other_parts = name.split("."), other.split(".")
    return len(parts) == len(other_parts) and all(
        a == b or (a.isdigit() and b.isdigit()) for a, b in zip(parts, other_parts, strict=True)
    )


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
