"""Eigen-CAM: the first principal direction of the activations, no gradients, no class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gradcam.core.explain.methods.cam_method import CamMethod

if TYPE_CHECKING:
    import torch

    from napari_gradcam.core.explain.context import LayerContext

POWER_STEPS = 100
POWER_TOLERANCE = 1e-12


def eigencam(ctx: LayerContext) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): A projected on its first right singular vector.

    Per image, A as an (h*w x K) matrix M. Its first right singular vector is the top
    eigenvector of the small K x K Gram matrix M^T M (a thin SVD: O(h w K^2), never the
    h*w x h*w left factor), in float64. The projection is signed to sum positive, then
    clipped at zero. Class-agnostic: the target does not change the map.
    """
    n, k, h, w = ctx.activations.shape
    matrix = ctx.activations.reshape(n, k, h * w).double()
    first = top_eigenvector(matrix @ matrix.transpose(1, 2))
    projection = (first.transpose(1, 2) @ matrix).reshape(n, h, w)
    sign = projection.sum(dim=(1, 2), keepdim=True).sign()
    return (projection * sign.where(sign != 0, sign.new_ones(()))).clamp_min(0).float()


def top_eigenvector(gram: torch.Tensor) -> torch.Tensor:
    """Unit eigenvector (N, K, 1) of the largest eigenvalue of symmetric PSD matrices (N, K, K).

    Power iteration from ``gram @ 1`` (close to the answer for non-negative activations, where
    the mean direction dominates): K^2 operations per step instead of eigh's K^3. When the
    vectors have not settled to ``POWER_TOLERANCE`` within ``POWER_STEPS`` steps (a small
    spectral gap), ``torch.linalg.eigh`` decides.
    """
    import torch

    vector = _unit(gram.sum(dim=2, keepdim=True))
    for _ in range(POWER_STEPS):
        following = _unit(gram @ vector)
        if float((following - vector).abs().max()) < POWER_TOLERANCE:
            return following
        vector = following
    return torch.linalg.eigh(gram)[1][..., -1:]


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    norms = vectors.norm(dim=1, keepdim=True)
    return vectors / norms.where(norms > 0, norms.new_ones(()))


EIGENCAM = CamMethod(
    "eigencam", "Eigen-CAM", "Muhammad & Yeasin, IJCNN 2020", frozenset({"activations"}), eigencam
)
