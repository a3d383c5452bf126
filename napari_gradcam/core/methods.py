"""Class-activation-map methods: one small function each, registered by name.

This module does not import torch at import time, so the napari widget can list the methods
without paying torch's import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import Tensor

    from napari_gradcam.core.context import LayerContext

Needs = Literal["gradients", "activations"]
ComputeFn = Callable[["LayerContext"], "Tensor"]


@dataclass(frozen=True)
class CamMethod:
    """A class-activation-map method.

    Attributes
    ----------
    name : str
        Registry key (``method=`` in ``explain``).
    title : str
        Human-readable name.
    reference : str
        The paper that defines it.
    needs : {"gradients", "activations"}
        What the capture must provide: the gradients of the target score at the layer
        (one forward and a backward through the head) or only the activations (one
        inference-mode forward).
    compute : callable
        ``(LayerContext) -> cam``, a tensor (N, h, w).
    """

    name: str
    title: str
    reference: str
    needs: Needs
    compute: ComputeFn


METHODS: dict[str, CamMethod] = {}


def register(
    name: str, title: str, reference: str, needs: Needs
) -> Callable[[ComputeFn], ComputeFn]:
    """Register ``compute`` under ``name`` in ``METHODS``."""

    def decorator(compute: ComputeFn) -> ComputeFn:
        METHODS[name] = CamMethod(name, title, reference, needs, compute)
        return compute

    return decorator


def get_method(name: str) -> CamMethod:
    """Return the method registered as ``name``, or raise with the valid names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}"
        ) from None


def weighted_channel_sum(activations: Tensor, weights: Tensor) -> Tensor:
    """Sum (N, C, h, w) activations over channels with (N, C) weights, as one batched matmul."""
    n, c, h, w = activations.shape
    return (weights.unsqueeze(1) @ activations.reshape(n, c, h * w)).reshape(n, h, w)


@register("gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017", needs="gradients")
def gradcam(ctx: LayerContext) -> Tensor:
    """ReLU of the channel sum of activations weighted by the spatial mean of the gradients."""
    weights = ctx.gradients.mean(dim=(2, 3))
    return weighted_channel_sum(ctx.activations, weights).clamp_min(0)


@register("eigencam", "Eigen-CAM", "Muhammad & Yeasin, IJCNN 2020", needs="activations")
def eigencam(ctx: LayerContext) -> Tensor:
    """Projection of the activations (h*w x K per image) on their first right singular vector.

    The singular vector is the top eigenvector of the small K x K Gram matrix (a thin SVD),
    signed so that the projection sums to a positive value, then clipped at zero.
    Class-agnostic: the target does not change the map.
    """
    from torch.linalg import eigh

    n, k, h, w = ctx.activations.shape
    matrix = ctx.activations.reshape(n, k, h * w).transpose(1, 2).double()
    _, eigenvectors = eigh(matrix.transpose(1, 2) @ matrix)
    first = eigenvectors[..., -1:]
    projection = (matrix @ first).reshape(n, h, w)
    sign = projection.sum(dim=(1, 2), keepdim=True).sign()
    return (projection * sign.where(sign != 0, sign.new_ones(()))).clamp_min(0).float()
