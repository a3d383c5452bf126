"""Slow references of the methods that re-run the model: one plain forward per mask or position.

Written from the papers' formulas, independently of the package (own blur, own guided ReLU).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn


def score(logits: torch.Tensor, target: int) -> float:
    """The explained score of one image: the logit, or the signed single logit."""
    if logits.shape[-1] == 1:
        return float(logits.reshape(-1)[0]) * (1 if target == 1 else -1)
    return float(logits[0, target])


def layer_output(model: nn.Module, image: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """The layer's output (K, h, w) for one image (C, H, W)."""
    store = {}

    def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        store["a"] = output.clone()  # before any in-place operation after the layer

    handle = layer.register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(image[None])
    finally:
        handle.remove()
    return store["a"][0]


def reference_scorecam(
    model: nn.Module, image: torch.Tensor, layer: nn.Module, target: int
) -> np.ndarray:
    """Score-CAM, Wang et al. Algorithm 1, channel by channel, with the zero-image baseline."""
    model.eval()
    activation = layer_output(model, image, layer)
    increases = []
    with torch.no_grad():
        baseline = score(model(torch.zeros_like(image)[None]), target)
        for k in range(len(activation)):
            up = F.interpolate(
                activation[k][None, None],
                size=image.shape[-2:],
                mode="bilinear",
                align_corners=False,
            )[0, 0]
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            increases.append(score(model((image * mask)[None]), target) - baseline)
    increases = np.array(increases)
    weights = np.exp(increases - increases.max())
    weights /= weights.sum()
    a = activation.double().numpy()
    return np.maximum(sum(w * a[k] for k, w in enumerate(weights)), 0.0)


def reference_ablationcam(
    model: nn.Module, image: torch.Tensor, layer: nn.Module, target: int
) -> np.ndarray:
    """Ablation-CAM, Desai & Ramaswamy eq. 3-4: a full forward per zeroed channel."""
    model.eval()
    activation = layer_output(model, image, layer)
    with torch.no_grad():
        y = score(model(image[None]), target)
        weights = []
        for k in range(len(activation)):

            def zero_channel(_m, _i, out, k=k):
                out = out.clone()
                out[:, k] = 0
                return out

            handle = layer.register_forward_hook(zero_channel)
            try:
                weights.append((y - score(model(image[None]), target)) / y)
            finally:
                handle.remove()
    a = activation.double().numpy()
    return np.maximum(sum(w * a[k] for k, w in enumerate(weights)), 0.0)


def reference_occlusion(
    model: nn.Module, image: torch.Tensor, target: int, window: int, step: int, blur: bool
) -> np.ndarray:
    """Occlusion, Zeiler & Fergus: a forward per position of a window centred on each cell."""
    model.eval()
    _, height, width = image.shape
    pixels = image.double().numpy()
    if blur:
        sigma = (0, window / 2, window / 2)
        filler = ndimage.gaussian_filter(pixels, sigma, mode="nearest", truncate=3.0)
    else:
        filler = np.zeros_like(pixels)
    rows, cols = -(-height // step), -(-width // step)
    cam = np.zeros((rows, cols))
    with torch.no_grad():
        y = score(model(image[None]), target)
        for i in range(rows):
            for j in range(cols):
                top, left = i * step + step // 2 - window // 2, j * step + step // 2 - window // 2
                ys = slice(max(top, 0), max(min(top + window, height), 0))
                xs = slice(max(left, 0), max(min(left + window, width), 0))
                occluded = pixels.copy()
                occluded[:, ys, xs] = filler[:, ys, xs]
                tensor = torch.from_numpy(occluded).to(image.dtype)
                cam[i, j] = max(y - score(model(tensor[None]), target), 0.0)
    return cam


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * (grad > 0)


class _GuidedReLUModule(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedReLU.apply(x)


def reference_guided_backprop(model: nn.Module, image: torch.Tensor, target: int) -> np.ndarray:
    """Guided backprop, Springenberg et al.: a copy whose nn.ReLUs use the guided rule."""
    guided = copy.deepcopy(model).eval()
    for module in list(guided.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, _GuidedReLUModule())
    x = image[None].clone().requires_grad_(True)
    logits = guided(x)
    if logits.shape[-1] == 1:
        value = logits.reshape(-1)[0] * (1 if target == 1 else -1)
    else:
        value = logits[0, target]
    value.backward()
    return x.grad[0].abs().amax(dim=0).double().numpy()
