"""pytorch-grad-cam's Grad-CAM as the reference of conformance tests (timm-marked tests only).

``reference_gradcam`` returns pytorch-grad-cam's map at the layer's resolution (before its
upsampling and scaling) for any scalar score of the model's outputs: a class logit, or a
similarity target as in its tutorials. pytorch-grad-cam is imported when a reference is made,
after the test module's ``importorskip``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

Reshape = Callable[[torch.Tensor], torch.Tensor]


def tokens_to_nchw(prefix: int, grid: tuple[int, int]) -> Reshape:
    """pytorch-grad-cam's ``reshape_transform`` of tokens: prefix dropped, (N, C, h, w)."""

    def reshape(t: torch.Tensor) -> torch.Tensor:
        patches = t[:, prefix:, :]
        return patches.reshape(t.shape[0], grid[0], grid[1], t.shape[2]).permute(0, 3, 1, 2)

    return reshape


def class_score(target: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The score of logits (N, K): the sum of class ``target``'s logit over the batch."""
    return lambda outputs: outputs[:, target].sum()


def reference_gradcam(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    reshape: Reshape | None,
    score: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """pytorch-grad-cam's Grad-CAM of ``score(model(x))`` at ``layer``'s resolution."""
    from pytorch_grad_cam import GradCAM

    module = model.get_submodule(layer)
    cam = GradCAM(model=model, target_layers=[module], reshape_transform=reshape)
    try:
        score(cam.activations_and_grads(x)).backward()
        activations = cam.activations_and_grads.activations[0].numpy()
        gradients = cam.activations_and_grads.gradients[0].numpy()
        raw = cam.get_cam_image(x, module, None, activations, gradients)
    finally:
        cam.activations_and_grads.release()
    return np.maximum(raw, 0)
