"""What a map method gets to work with: the captured layer and the model around it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerContext:
    """Everything captured for one explanation, handed to a method's ``compute``.

    Attributes
    ----------
    model : torch.nn.Module
        The classifier, in eval mode with frozen parameters while the method runs.
    batch : torch.Tensor
        The preprocessed input (N, C, H, W).
    layer_name : str
        Name of the target layer.
    layer : torch.nn.Module
        The target layer.
    activations : torch.Tensor
        Its output (N, K, h, w), detached.
    gradients : torch.Tensor or None
        d(target score)/d(activations), for methods that need them.
    logits : torch.Tensor
        The model's output (N, classes), detached.
    targets : torch.Tensor
        int64 (N,): the explained class per image.
    """

    model: nn.Module
    batch: torch.Tensor
    layer_name: str
    layer: nn.Module
    activations: torch.Tensor
    gradients: torch.Tensor | None
    logits: torch.Tensor
    targets: torch.Tensor
