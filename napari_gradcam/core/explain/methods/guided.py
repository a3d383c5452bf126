"""Guided backpropagation and Guided Grad-CAM: input-resolution gradients through guided ReLUs.

Limitation: only ``nn.ReLU`` modules are guided (by hooks on their outputs). ReLUs called as
functions (``F.relu``, ``torch.relu``, ``x.clamp(min=0)``) and other activations back-propagate
as usual; ``explain()`` refuses a model without any ``nn.ReLU`` module.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from napari_gradcam.core.explain.methods.cam_method import GRADIENT, CamMethod
from napari_gradcam.core.explain.methods.gradient import gradcam

if TYPE_CHECKING:
    import torch
    from torch import nn

    from napari_gradcam.core.explain.context import LayerContext


def guided_backprop(ctx: LayerContext) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015, eq. in fig. 1).

    The gradient of the target score with respect to the input, where every ReLU passes back
    only positive gradients at positions where its forward input was positive:
    ``R_l = (f_l > 0) * (R_{l+1} > 0) * R_{l+1}``. The map is the largest absolute value over
    the colour channels (N, H, W).

    Cost: one forward and one backward through the whole network from the input (the graph
    of a training step, without parameter gradients).
    """
    return guided_gradients(ctx).abs().amax(dim=1)


def guided_gradcam(ctx: LayerContext) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017, sec. 3.1).

    Guided backpropagation times Grad-CAM upsampled (bilinear) to the input size; as the
    upsampled map is non-negative, the largest absolute value over colour channels of the
    product is that of the guided gradients times the map.
    """
    import torch.nn.functional as F

    cam = gradcam(ctx)[:, None]
    size = tuple(ctx.batch.shape[-2:])
    upsampled = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    return guided_backprop(ctx) * upsampled


def guided_gradients(ctx: LayerContext) -> torch.Tensor:
    """d(target score)/d(input) (N, C, H, W) with every ``nn.ReLU`` guided."""
    import torch

    from napari_gradcam.core.explain.batching import run_model
    from napari_gradcam.core.explain.targets import target_scores

    with torch.inference_mode(False), torch.enable_grad(), guided_relus(ctx.model):
        inputs = ctx.batch.clone().requires_grad_(True)
        scores = target_scores(run_model(ctx.model, inputs, ctx.target.head), ctx.targets)
        (gradients,) = torch.autograd.grad(scores.sum(), inputs)
    return gradients


def has_relu_modules(model: nn.Module) -> bool:
    """Whether ``model`` has any ``nn.ReLU`` module for guided backpropagation to guide."""
    from torch import nn

    return any(isinstance(module, nn.ReLU) for module in model.modules())


def guided_relus(model: nn.Module) -> AbstractContextManager[None]:
    """Inside the block, every ``nn.ReLU`` passes back only the positive part of its gradient.

    The ReLU's own backward already zeroes positions with a non-positive input; a hook on its
    output clamps the incoming gradient at zero first. Hooks are removed on exit.
    """
    from torch import nn

    from napari_gradcam.core.explain.hooks import forward_hooks

    def guide(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if output.requires_grad:
            output.register_hook(lambda gradient: gradient.clamp_min(0))

    relus = {name for name, module in model.named_modules() if isinstance(module, nn.ReLU)}
    return forward_hooks(model, lambda _name: guide, relus)


GUIDED_BACKPROP = CamMethod(
    "guidedbackprop",
    "Guided backpropagation",
    "Springenberg et al., ICLR workshops 2015",
    frozenset({"guided"}),
    guided_backprop,
)
GUIDED_GRADCAM = CamMethod(
    "guided-gradcam",
    "Guided Grad-CAM",
    "Selvaraju et al., ICCV 2017",
    GRADIENT | {"guided"},
    guided_gradcam,
)
