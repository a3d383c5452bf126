"""Class-activation-map methods: one small function each, registered by name.

This module does not import torch, so the napari widget can list the methods without
paying torch's import time; the functions only call tensor methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

WeighFn = Callable[["Tensor", "Tensor"], "Tensor"]


@dataclass(frozen=True)
class CamMethod:
    """A gradient-weighted map method.

    Attributes
    ----------
    name : str
        Registry key (``method=`` in ``explain``).
    title : str
        Human-readable name.
    reference : str
        The paper that defines it.
    weigh : callable
        ``(activations, gradients) -> cam``: (N, C, h, w) twice in, (N, h, w) out, where
        ``gradients`` are d(target score)/d(activations).
    """

    name: str
    title: str
    reference: str
    weigh: WeighFn


METHODS: dict[str, CamMethod] = {}


def register(name: str, title: str, reference: str) -> Callable[[WeighFn], WeighFn]:
    """Register ``weigh`` under ``name`` in ``METHODS``."""

    def decorator(weigh: WeighFn) -> WeighFn:
        METHODS[name] = CamMethod(name=name, title=title, reference=reference, weigh=weigh)
        return weigh

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


@register("gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017")
def gradcam(activations: Tensor, gradients: Tensor) -> Tensor:
    """ReLU of the channel sum of activations weighted by the spatial mean of the gradients."""
    weights = gradients.mean(dim=(2, 3))
    return weighted_channel_sum(activations, weights).clamp_min(0)
