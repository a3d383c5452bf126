"""Score-CAM: channels weighted by how much their mask alone makes the model see the class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gradcam.core.explain.methods.cam_method import CamMethod
from napari_gradcam.core.explain.methods.gradient import weighted_channel_sum

if TYPE_CHECKING:
    import torch

    from napari_gradcam.core.explain.context import LayerContext


def scorecam(ctx: LayerContext) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020, Algorithm 1).

    Each channel's activation, bilinearly upsampled to the input size and min-max
    normalised to [0, 1] (``H_k``), masks the preprocessed input: ``X * H_k``. With ``S_k`` the
    target score (logit) of the masked input, the weights are ``softmax_k(S_k - S_b)`` over
    channels; the baseline score ``S_b`` cancels in the softmax, so it is not computed. The
    map is ``relu(sum_k w_k A_k)``. A channel with a constant activation gets an all-zero
    mask; all of those share one forward of a zero input. Channels of one image whose
    normalised activations are equal (e.g. one active cell at the same place) have the same
    mask, so they share one masked forward.

    Cost: one inference forward per distinct mask, batched in chunks that fit
    ``memory_budget_mb``; masks are built per chunk, never all at once.
    """
    import torch

    from napari_gradcam.core.explain.batching import chunk_size, chunked
    from napari_gradcam.core.explain.fast_forward import fast_inference
    from napari_gradcam.core.explain.targets import target_scores

    a = ctx.activations
    flat = a.flatten(2)
    varying = flat.amax(dim=2) != flat.amin(dim=2)
    pairs, shared = _distinct_masks(flat, varying)
    mask_bytes = ctx.batch[0, 0].nbytes
    size = chunk_size(ctx.monitor.memory_budget_mb, ctx.sample_bytes + mask_bytes)
    with torch.inference_mode():
        scores = _constant_channel_scores(ctx, varying)
        with fast_inference(ctx.model, ctx.batch, ctx.bfloat16, ctx.target.head) as forward:

            def masked_scores(start: int, stop: int) -> torch.Tensor:
                images, channels = pairs[start:stop].unbind(dim=1)
                masks = _masks(a[images, channels], ctx.batch.shape[-2:])
                logits = forward(ctx.batch[images] * masks)
                return target_scores(logits, ctx.targets[images])

            if len(pairs):
                distinct = chunked(masked_scores, len(pairs), size, ctx.monitor)
                scores[varying] = distinct[shared]
        weights = torch.softmax(scores, dim=1).to(a.dtype)
        return weighted_channel_sum(a, weights).clamp_min(0)


def _distinct_masks(flat: torch.Tensor, varying: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One (image, channel) pair per distinct mask, and the index of each varying pair's.

    Parameters
    ----------
    flat : torch.Tensor
        (N, K, h*w) activations.
    varying : torch.Tensor
        (N, K) bool: the channels whose activation is not constant.

    Returns
    -------
    pairs : torch.Tensor
        (M, 2) the first pair, in image-major order, of each distinct normalised map.
    shared : torch.Tensor
        (P,) for each of the P varying pairs (image-major), its row in ``pairs``.
    """
    import torch

    images, channels = varying.nonzero().unbind(dim=1)
    maps = flat[images, channels]
    low = maps.amin(dim=1, keepdim=True)
    normalised = (maps - low) / (maps.amax(dim=1, keepdim=True) - low)
    keys = torch.cat([images[:, None].to(maps.dtype), normalised], dim=1)
    _, shared = torch.unique(keys, dim=0, return_inverse=True)
    order = torch.arange(len(keys), device=keys.device)
    first = torch.full((int(shared.max()) + 1 if len(keys) else 0,), len(keys), device=keys.device)
    first = first.scatter_reduce(0, shared, order, reduce="amin")
    rank = torch.empty_like(first)
    rank[first.argsort()] = torch.arange(len(first), device=keys.device)
    return torch.stack([images, channels], dim=1)[first.sort().values], rank[shared]


def _masks(activations: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """(M, h, w) activations -> (M, 1, H, W) masks, each min-max normalised to [0, 1]."""
    import torch.nn.functional as F

    up = F.interpolate(activations[:, None], size=tuple(size), mode="bilinear", align_corners=False)
    low = up.amin(dim=(2, 3), keepdim=True)
    span = up.amax(dim=(2, 3), keepdim=True) - low
    return (up - low) / span.where(span > 0, span.new_ones(()))


def _constant_channel_scores(ctx: LayerContext, varying: torch.Tensor) -> torch.Tensor:
    """(N, K) scores, holding the zero-input score (the all-zero mask) where not ``varying``."""
    import torch

    from napari_gradcam.core.explain.batching import run_model
    from napari_gradcam.core.explain.targets import target_scores

    scores = torch.zeros(varying.shape, dtype=ctx.batch.dtype, device=ctx.batch.device)
    if not bool(varying.all()):
        logits = run_model(ctx.model, torch.zeros_like(ctx.batch[:1]), ctx.target.head)
        zero_scores = target_scores(logits.expand(len(ctx.batch), *logits.shape[1:]), ctx.targets)
        scores[:] = zero_scores[:, None]
    return scores


SCORECAM = CamMethod(
    "scorecam",
    "Score-CAM",
    "Wang et al., CVPR workshops 2020",
    frozenset({"activations", "forwards"}),
    scorecam,
    bfloat16=True,
)
