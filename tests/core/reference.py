"""Direct, slow reference implementations of the method formulas (full autograd graph)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def reference_activations_and_gradients(
    model: nn.Module, image: torch.Tensor, layer: nn.Module, target: int
) -> tuple[np.ndarray, np.ndarray]:
    """A and dS/dA for one image (C, H, W), the way a user would hand-write it with hooks.

    Parameters keep ``requires_grad``; the whole graph is built and back-propagated. The
    hook hands the rest of the network a copy so in-place ops cannot touch A.
    """
    model.eval()
    store: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        output.retain_grad()
        store["a"] = output
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(image[None])
    finally:
        handle.remove()
    if logits.shape[-1] == 1:
        score = logits.reshape(-1)[0] * (1 if target == 1 else -1)
    else:
        score = logits[0, target]
    score.backward()
    activation = store["a"][0].detach().double().numpy()
    gradient = store["a"].grad[0].double().numpy()
    model.zero_grad(set_to_none=True)
    return activation, gradient


def reference_gradcam(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Grad-CAM, Selvaraju et al. eq. 1-2, written out channel by channel."""
    channels, height, width = activation.shape
    cam = np.zeros((height, width))
    for k in range(channels):
        alpha_k = gradient[k].sum() / (height * width)
        cam += alpha_k * activation[k]
    return np.maximum(cam, 0.0)


def reference_eigencam(activation: np.ndarray) -> np.ndarray:
    """Eigen-CAM: activations (h*w x K) projected on their first right singular vector."""
    channels, height, width = activation.shape
    matrix = activation.reshape(channels, height * width).T
    _, _, vt = np.linalg.svd(matrix, full_matrices=False)
    projection = matrix @ vt[0]
    if projection.sum() < 0:
        projection = -projection
    return np.maximum(projection, 0.0).reshape(height, width)


def reference_gradcam_plus_plus(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Grad-CAM++, Chattopadhyay et al. eq. 19 (S = exp(Y)), position by position."""
    channels, height, width = activation.shape
    cam = np.zeros((height, width))
    for k in range(channels):
        total = activation[k].sum()
        weight = 0.0
        for i in range(height):
            for j in range(width):
                g = gradient[k, i, j]
                denominator = 2 * g**2 + total * g**3
                alpha = g**2 / denominator if denominator != 0 else 0.0
                weight += alpha * max(g, 0.0)
        cam += weight * activation[k]
    return np.maximum(cam, 0.0)


def reference_xgradcam(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """XGrad-CAM, Fu et al. eq. 9: gradients averaged with A / sum(A) as weights."""
    channels, height, width = activation.shape
    cam = np.zeros((height, width))
    for k in range(channels):
        total = activation[k].sum()
        weight = 0.0
        for i in range(height):
            for j in range(width):
                if total != 0:
                    weight += activation[k, i, j] / total * gradient[k, i, j]
        cam += weight * activation[k]
    return np.maximum(cam, 0.0)


def reference_layercam(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """LayerCAM, Jiang et al. eq. 5-6: relu of sum_k relu(G_k) * A_k."""
    cam = np.zeros(activation.shape[1:])
    for k in range(activation.shape[0]):
        cam += np.maximum(gradient[k], 0.0) * activation[k]
    return np.maximum(cam, 0.0)


def reference_hirescam(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """HiResCAM, Draelos & Carin: relu of sum_k G_k * A_k."""
    cam = np.zeros(activation.shape[1:])
    for k in range(activation.shape[0]):
        cam += gradient[k] * activation[k]
    return np.maximum(cam, 0.0)
