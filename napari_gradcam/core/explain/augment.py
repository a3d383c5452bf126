"""Test-time augmentation by flips: explain flipped copies, flip the maps back, average."""

from __future__ import annotations

import torch

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
"""Identity, horizontal, vertical and both: the flips of (..., H, W) tensors."""


def flipped_copies(batch: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (4 N, C, H, W): the batch under each of ``FLIPS``, in that order."""
    return torch.cat([batch.flip(dims) if dims else batch for dims in FLIPS])


def mean_of_unflipped(maps: torch.Tensor) -> torch.Tensor:
    """(4 N, h, w) maps of ``flipped_copies`` -> (N, h, w): each flipped back, then averaged.

    Flipping a map back is exact on its grid; a layer whose cells do not split the input
    symmetrically (odd sizes, strided borders) makes the flipped maps off by a fraction of a
    cell, so the average is a smoothing, not a bit-exact symmetrisation.
    """
    groups = maps.chunk(len(FLIPS))
    return torch.stack(
        [group.flip(dims) if dims else group for group, dims in zip(groups, FLIPS, strict=True)]
    ).mean(dim=0)
