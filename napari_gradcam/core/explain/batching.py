"""Batched inference forwards, chunked by a memory budget (Score-CAM, Ablation-CAM, occlusion).

Peak memory of an inference forward is estimated from the activation sizes seen in the capture
forward (``hooks.record_output_sizes``): the input plus three times the largest module output
(a layer's input, its output and a skip connection alive at once). TorchScript modules cannot
be hooked; for them the largest activation is assumed to be ``UNHOOKED_EXPANSION`` times the
input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from napari_gradcam.core.explain.context import Monitor
from napari_gradcam.core.explain.targets import as_logits

MB = 2**20
AUTO_BUDGET_MB = 96
"""Chunk size without a given budget: measured fastest on CPU for ResNet-18 at 224 x 224.
Larger chunks are slower: their activations overflow the caches and outgrow glibc's largest
mmap threshold (32 MB), so every forward maps and faults in fresh pages."""
LIVE_ACTIVATIONS = 3
UNHOOKED_EXPANSION = 24


def run_model(
    model: nn.Module,
    batch: torch.Tensor,
    head: Callable[[object], torch.Tensor] = as_logits,
) -> torch.Tensor:
    """The model's output through ``head``: its logits (N, K) by default.

    A bound target's ``head`` gives what it scores. A model that fails on the input gives a
    ``ValueError``.
    """
    try:
        return head(model(batch))
    except RuntimeError as err:
        raise ValueError(f"the model failed to run on this input: {err}") from err


def forward_bytes(input_bytes: int, largest_output: int | None) -> int:
    """Estimated peak bytes of one sample's inference forward (``None``: sizes unknown)."""
    largest = UNHOOKED_EXPANSION * input_bytes if largest_output is None else largest_output
    return input_bytes + LIVE_ACTIVATIONS * largest


def chunk_size(budget_mb: float | None, sample_bytes: int, fixed_bytes: int = 0) -> int:
    """How many samples fit in ``budget_mb``; a ``ValueError`` when not even one does.

    ``None`` sizes chunks to about ``AUTO_BUDGET_MB``, and at least one sample.
    """
    if budget_mb is None:
        return max(int((AUTO_BUDGET_MB * MB - fixed_bytes) // sample_bytes), 1)
    room = budget_mb * MB - fixed_bytes
    if room < sample_bytes:
        need = (sample_bytes + fixed_bytes) / MB
        raise ValueError(
            f"memory_budget_mb={budget_mb:g} is too small for one masked forward of this model "
            f"and input (about {need:.1f} MB); raise memory_budget_mb to at least {need:.0f}"
        )
    return max(int(room // sample_bytes), 1)


def chunked(
    forward: Callable[[int, int], torch.Tensor], total: int, size: int, monitor: Monitor
) -> torch.Tensor:
    """Concatenate ``forward(start, stop)`` over chunks of ``size`` samples under inference mode.

    The monitor counts samples and may cancel between chunks.
    """
    parts = []
    monitor.start(total)
    with torch.inference_mode():
        for start in range(0, total, size):
            monitor.check()
            stop = min(start + size, total)
            parts.append(forward(start, stop))
            monitor.advance(stop - start)
    return torch.cat(parts)
