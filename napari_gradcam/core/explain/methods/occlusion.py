"""Occlusion: the score drop when a square of the image is hidden (model-agnostic)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from napari_gradcam.core.explain.method_options import option
from napari_gradcam.core.explain.methods.cam_method import CamMethod

if TYPE_CHECKING:
    import torch

    from napari_gradcam.core.explain.context import LayerContext

OcclusionBaseline = Literal["blur", "mean"]


@dataclass(frozen=True)
class OcclusionOptions:
    """The occluding square and what hides it; each field's ``help`` says what it does."""

    window: int | None = option(
        None,
        "occlusion window",
        "side of the occluding square in input pixels (default: an eighth of the shorter side)",
        key="occlusion_window",
        short="window",
        minimum=1,
        maximum=4096,
        none_label="auto",
    )
    stride: int | None = option(
        None,
        "occlusion stride",
        "step of the occlusion grid, the map's stride, in input pixels (default: half the window)",
        key="occlusion_stride",
        short="stride",
        minimum=1,
        maximum=4096,
        none_label="auto",
    )
    baseline: OcclusionBaseline = option(
        "blur",
        "occlusion baseline",
        "what hides the occluded square: the image blurred at the window's scale, or the "
        "normalisation mean",
        key="occlusion_baseline",
        short="baseline",
        choices=("blur", "mean"),
    )

    def __post_init__(self) -> None:
        for name, value in (("occlusion_window", self.window), ("occlusion_stride", self.stride)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
        if self.baseline not in ("blur", "mean"):
            raise ValueError(f"unknown occlusion baseline {self.baseline!r}; use 'blur' or 'mean'")

    def grid(self, shape: Sequence[int]) -> tuple[int, int]:
        """(window, stride) in input pixels for an input of ``shape`` (height, width).

        Examples
        --------
        >>> OcclusionOptions().grid((224, 160)), OcclusionOptions(16).grid((224, 160))
        ((20, 10), (16, 8))
        >>> OcclusionOptions(8, 3).grid((64, 64))
        (8, 3)
        """
        height, width = shape
        window = self.window or max(min(height, width) // 8, 1)
        return window, self.stride or max(window // 2, 1)


def occlusion(ctx: LayerContext) -> torch.Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014, sec. 4.2).

    The image is cut in cells of ``stride`` pixels (``ceil(H / stride)`` x
    ``ceil(W / stride)``); for each cell a ``window``-sided square centred on the cell is
    replaced by the baseline (the image blurred at the window's scale, or the normalisation
    mean; never white) and the map holds the positive part of the score drop ``y - y_occluded``.
    The map has the grid's resolution: stride ``stride``, placed like any layer map.

    Needs no layer and no hooks: it works with TorchScript models. Cost: one inference forward
    per cell and image, batched in chunks that fit ``memory_budget_mb``.
    """
    import torch

    from napari_gradcam.core.explain.batching import chunk_size, chunked
    from napari_gradcam.core.explain.fast_forward import fast_inference
    from napari_gradcam.core.explain.targets import target_scores

    options: OcclusionOptions = ctx.options
    window, step = options.grid(ctx.batch.shape[-2:])
    n, _, height, width = ctx.batch.shape
    rows, cols = math.ceil(height / step), math.ceil(width / step)
    device = ctx.batch.device
    size = chunk_size(ctx.monitor.memory_budget_mb, ctx.sample_bytes)
    with torch.inference_mode():
        baseline = occlusion_baseline(ctx.batch, options.baseline, window)
        with fast_inference(ctx.model, ctx.batch, ctx.bfloat16, ctx.target.head) as forward:

            def occluded_scores(start: int, stop: int) -> torch.Tensor:
                index = torch.arange(start, stop, device=device)
                images, cells = index // (rows * cols), index % (rows * cols)
                hidden = _squares(cells // cols, cells % cols, window, step, (height, width))
                inputs = torch.where(hidden[:, None], baseline[images], ctx.batch[images])
                return target_scores(forward(inputs), ctx.targets[images])

            occluded = chunked(occluded_scores, n * rows * cols, size, ctx.monitor)
        drop = ctx.scores()[:, None, None] - occluded.reshape(n, rows, cols)
        return drop.clamp_min(0)


def occlusion_stride(ctx: LayerContext) -> tuple[float, float]:
    """The map's stride: the occlusion grid's step on both axes."""
    step = float(ctx.options.grid(ctx.batch.shape[-2:])[1])
    return step, step


def occlusion_baseline(batch: torch.Tensor, kind: OcclusionBaseline, window: int) -> torch.Tensor:
    """What hides the occluded pixels: a Gaussian blur (sigma = window / 2) or zeros.

    Zeros of the normalised input are the model card's mean colour.
    """
    import torch
    import torch.nn.functional as F

    if kind == "mean":
        return torch.zeros_like(batch)
    sigma = window / 2
    radius = max(int(3 * sigma + 0.5), 1)
    offsets = torch.arange(-radius, radius + 1, device=batch.device, dtype=batch.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = batch.shape[1]
    padded = F.pad(batch, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)


def _squares(
    rows: torch.Tensor, cols: torch.Tensor, window: int, step: int, shape: tuple[int, int]
) -> torch.Tensor:
    """Boolean masks (B, H, W) of ``window``-sided squares centred on the cells (rows, cols)."""
    import torch

    height, width = shape
    top = rows * step + step // 2 - window // 2
    left = cols * step + step // 2 - window // 2
    ys = torch.arange(height, device=rows.device)
    xs = torch.arange(width, device=rows.device)
    in_rows = (ys >= top[:, None]) & (ys < top[:, None] + window)
    in_cols = (xs >= left[:, None]) & (xs < left[:, None] + window)
    return in_rows[:, :, None] & in_cols[:, None, :]


OCCLUSION = CamMethod(
    "occlusion",
    "Occlusion",
    "Zeiler & Fergus, ECCV 2014",
    frozenset({"forwards"}),
    occlusion,
    options=OcclusionOptions,
    bfloat16=True,
    map_stride=occlusion_stride,
)
