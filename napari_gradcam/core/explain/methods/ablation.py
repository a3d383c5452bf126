"""Ablation-CAM: channels weighted by how much the score drops when each one is zeroed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from napari_gradcam.core.explain.methods.cam_method import CamMethod
from napari_gradcam.core.explain.methods.gradient import weighted_channel_sum

if TYPE_CHECKING:
    import torch
    from torch import nn

    from napari_gradcam.core.explain.context import LayerContext


def ablationcam(ctx: LayerContext) -> torch.Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020, eq. 3-4).

    With ``y`` the target score and ``y_k`` the score when channel k of the layer's output is
    set to zero, ``w_k = (y - y_k) / y`` (a zero ``y`` leaves the differences unscaled) and
    the map is ``relu(sum_k w_k A_k)``. At a token or channels-last layer, channel k of the
    patch tokens (the map) is zeroed; prefix tokens (class, registers) are kept as they were.

    Cost: the captured A is reused; the model re-runs with a hook that replaces the layer's
    output by a batch of ablated copies. When the part after the layer depends on nothing
    else (checked once on the unablated A), the part before it runs on one image per chunk
    and only the head runs per ablated copy; otherwise every copy is a full forward. Chunks
    fit ``memory_budget_mb``.
    """
    import torch

    from napari_gradcam.core.explain.batching import chunk_size, chunked, run_model
    from napari_gradcam.core.explain.targets import target_scores

    a = ctx.activations
    n, k = a.shape[:2]
    device = a.device
    pairs = torch.cartesian_prod(torch.arange(n, device=device), torch.arange(k, device=device))
    with torch.inference_mode(), _replaced_output(ctx.layer) as slot:
        head_only = _head_only_works(ctx, slot)
        sample = ctx.head_sample_bytes if head_only else ctx.sample_bytes + a[0].nbytes
        fixed = ctx.sample_bytes if head_only else 0
        size = chunk_size(ctx.monitor.memory_budget_mb, sample, fixed)

        def ablated_scores(start: int, stop: int) -> torch.Tensor:
            images, channels = pairs[start:stop].unbind(dim=1)
            rows = a[images].clone()
            rows[torch.arange(len(rows), device=device), channels] = 0
            slot["output"] = ctx.as_layer_output(rows, images)
            inputs = ctx.batch[:1] if head_only else ctx.batch[images]
            return target_scores(run_model(ctx.model, inputs, ctx.target.head), ctx.targets[images])

        ablated = chunked(ablated_scores, n * k, size, ctx.monitor).reshape(n, k)
        y = ctx.scores()
        weights = (y[:, None] - ablated) / y.where(y != 0, torch.ones_like(y))[:, None]
        return weighted_channel_sum(a, weights.to(a.dtype)).clamp_min(0)


@contextmanager
def _replaced_output(layer: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """While inside, ``layer`` outputs ``slot["output"]`` instead of what it computed."""
    from napari_gradcam.core.explain.hooks import owned_forward_hook

    slot: dict[str, torch.Tensor] = {}
    handle = owned_forward_hook(layer, lambda _module, _inputs, _output: slot["output"])
    try:
        yield slot
    finally:
        handle.remove()


def _head_only_works(ctx: LayerContext, slot: dict[str, torch.Tensor]) -> bool:
    """Whether the unablated A fed after one image's trunk reproduces every image's logits."""
    import torch

    from napari_gradcam.core.explain.batching import run_model

    a, expected = ctx.activations, ctx.logits
    images = torch.arange(len(a), device=a.device)
    if len(a) == 1:  # two copies: the head must keep the batch apart
        a, images = a.expand(2, -1, -1, -1), images.repeat(2)
        expected = expected.expand(2, *expected.shape[1:])
    slot["output"] = ctx.as_layer_output(a.clone(), images)
    try:
        logits = run_model(ctx.model, ctx.batch[:1], ctx.target.head)
    except ValueError:
        return False
    tolerance = 1e-4 * float(expected.abs().max())
    return logits.shape == expected.shape and torch.allclose(
        logits, expected, rtol=1e-4, atol=tolerance
    )


ABLATIONCAM = CamMethod(
    "ablationcam",
    "Ablation-CAM",
    "Desai & Ramaswamy, WACV 2020",
    frozenset({"activations", "forwards"}),
    ablationcam,
)
