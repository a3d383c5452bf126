"""Gradient-weighted maps: Grad-CAM and its variants, from A and dY/dA at one layer.

All take the activations A (N, K, h, w) and the gradients G = dY^c/dA of the target score
Y^c, and return ReLU of a channel combination (N, h, w). Cost beyond the capture: a few
elementwise operations at the layer's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gradcam.core.explain.methods.cam_method import GRADIENT, CamMethod

if TYPE_CHECKING:
    import torch

    from napari_gradcam.core.explain.context import LayerContext


def weighted_channel_sum(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum (N, C, h, w) activations over channels with (N, C) weights, as one batched matmul."""
    n, c, h, w = activations.shape
    return (weights.unsqueeze(1) @ activations.reshape(n, c, h * w)).reshape(n, h, w)


def gradcam(ctx: LayerContext) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2).

    ReLU of the channel sum of A weighted by the spatial mean of the gradients.
    """
    weights = ctx.gradients.mean(dim=(2, 3))
    return weighted_channel_sum(ctx.activations, weights).clamp_min(0)


def gradcam_plus_plus(ctx: LayerContext) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018, eq. 19 with the exponential score).

    With S = exp(Y) and a piecewise-linear network, the higher derivatives are powers of G::

        alpha_ij^k = G_ij^2 / (2 G_ij^2 + sum_ab A_ab^k G_ij^3)    (0 where the denominator is 0)
        w_k = sum_ij alpha_ij^k relu(G_ij^k)

    The common factor exp(Y) of the weights is dropped (it only scales the map).
    """
    import torch

    a, g = ctx.activations, ctx.gradients
    g2 = g * g
    denominator = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g
    alpha = torch.where(denominator != 0, g2 / denominator, torch.zeros_like(g2))
    weights = (alpha * g.clamp_min(0)).sum(dim=(2, 3))
    return weighted_channel_sum(a, weights).clamp_min(0)


def xgradcam(ctx: LayerContext) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020, eq. 9): gradients averaged with the activations as weights.

    ``w_k = sum_ij (A_ij^k / sum_ab A_ab^k) G_ij^k`` (0 for a channel whose activations sum
    to 0), then ReLU of the weighted channel sum.
    """
    import torch

    a, g = ctx.activations, ctx.gradients
    totals = a.sum(dim=(2, 3))
    weighted = (a * g).sum(dim=(2, 3))
    weights = torch.where(totals != 0, weighted / totals, torch.zeros_like(totals))
    return weighted_channel_sum(a, weights).clamp_min(0)


def layercam(ctx: LayerContext) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021, eq. 5-6): ``relu(sum_k relu(G^k) * A^k)``, elementwise."""
    return (ctx.gradients.clamp_min(0) * ctx.activations).sum(dim=1).clamp_min(0)


def hirescam(ctx: LayerContext) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020): ``relu(sum_k G^k * A^k)``, no spatial averaging."""
    return (ctx.gradients * ctx.activations).sum(dim=1).clamp_min(0)


GRADCAM = CamMethod("gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017", GRADIENT, gradcam)
GRADCAM_PLUS_PLUS = CamMethod(
    "gradcam++", "Grad-CAM++", "Chattopadhyay et al., WACV 2018", GRADIENT, gradcam_plus_plus
)
XGRADCAM = CamMethod("xgradcam", "XGrad-CAM", "Fu et al., BMVC 2020", GRADIENT, xgradcam)
LAYERCAM = CamMethod("layercam", "LayerCAM", "Jiang et al., IEEE TIP 2021", GRADIENT, layercam)
HIRESCAM = CamMethod("hirescam", "HiResCAM", "Draelos & Carin, arXiv 2020", GRADIENT, hirescam)
