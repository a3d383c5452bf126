"""What every slide backend hands back: lazy levels, their downsamples and microns per pixel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

READ_CHUNK = 512
"""Smallest side of the chunks a backend without its own tiling is read in."""


@dataclass(frozen=True)
class Pyramid:
    """A slide's levels as one backend reads them.

    Attributes
    ----------
    levels : tuple
        ``(H, W, C)`` or ``(H, W)`` lazy arrays (zarr or dask), finest first.
    downsamples : tuple of tuple of float
        Level-0 pixels per pixel of each level ``(dy, dx)``.
    mpp : float or None
        Microns per level-0 pixel from the file's metadata, or None when it does not say.
    """

    levels: tuple[Any, ...]
    downsamples: tuple[tuple[float, float], ...]
    mpp: float | None


def shape_downsamples(shapes: list[tuple[int, ...]]) -> tuple[tuple[float, float], ...]:
    """Level-0 pixels per pixel of each level, from the level shapes."""
    full = np.asarray(shapes[0][:2], dtype=float)
    return tuple(tuple(float(d) for d in full / np.asarray(s[:2], dtype=float)) for s in shapes)


def mean_mpp(values: list[Any]) -> float | None:
    """Microns per pixel: the mean of the positive ``values`` (x and y), or None when none is.

    ``None``, empty strings and numbers that are not positive are skipped (a slide that does
    not say, or says 0).
    """
    numbers = [float(v) for v in values if v not in (None, "")]
    numbers = [v for v in numbers if v > 0]
    return float(np.mean(numbers)) if numbers else None


def chunk_side(tile: int | None) -> int:
    """A chunk side: the backend's tile, repeated to at least :data:`READ_CHUNK` pixels."""
    if not tile or tile <= 0:
        return READ_CHUNK
    return tile * -(-READ_CHUNK // tile)


class RegionArray:
    """One level of a slide whose backend reads boxes: sliced like an array, read on demand.

    Slicing reads only the box asked for (a 96 px tile is one backend call, not the chunks
    around it); :meth:`Slide.dask_levels` wraps it in a dask array of ``chunk`` px chunks for
    napari.

    Parameters
    ----------
    read : callable
        ``read(y, x, height, width)`` returns ``(height, width, channels)`` uint8 pixels of
        the box whose top-left corner is ``(y, x)`` in the level's own pixels.
    shape : tuple of int
        ``(height, width, channels)`` of the level.
    chunk : int
        Side of the chunks napari reads.
    token : str
        What identifies the level (file, backend and level) for dask.
    """

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(
        self,
        read: Callable[[int, int, int, int], np.ndarray],
        shape: tuple[int, int, int],
        chunk: int,
        token: str,
    ) -> None:
        self.read = read
        self.shape = tuple(int(n) for n in shape)
        self.chunk = chunk
        self.token = token

    def __dask_tokenize__(self) -> str:
        return self.token

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        pixels = self[:, :]
        return pixels if dtype is None else pixels.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) > 3 or any(not isinstance(k, slice) for k in keys):
            raise IndexError(f"a slide level is sliced with slices only, got {key!r}")
        keys = keys + (slice(None),) * (3 - len(keys))
        bounds = [k.indices(n) for k, n in zip(keys[:2], self.shape[:2], strict=True)]
        if any(step < 1 for _, _, step in bounds):
            raise IndexError("a slide level is read with positive steps only")
        (top, bottom, row_step), (left, right, column_step) = bounds
        height, width = max(0, bottom - top), max(0, right - left)
        if height == 0 or width == 0:
            return np.zeros((height, width, self.shape[2]), self.dtype)[..., keys[2]]
        box = self.read(top, left, height, width)
        return box[::row_step, ::column_step, keys[2]]
