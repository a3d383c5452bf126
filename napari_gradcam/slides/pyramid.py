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


def chunk_side(tile: int | None) -> int:
    """A chunk side: the backend's tile, repeated to at least :data:`READ_CHUNK` pixels."""
    if not tile or tile <= 0:
        return READ_CHUNK
    return tile * -(-READ_CHUNK // tile)


def lazy_level(
    read: Callable[[int, int, int, int], np.ndarray],
    shape: tuple[int, int, int],
    chunk: int,
) -> Any:
    """A dask array of ``shape`` (uint8) whose chunks are read by ``read(y, x, height, width)``.

    ``read`` gets the chunk's top-left corner and size in the level's own pixels and returns
    ``(height, width, channels)`` pixels; it runs only when a chunk is computed.
    """
    import dask.array as da

    chunks = da.core.normalize_chunks((chunk, chunk, shape[2]), shape)
    return da.map_blocks(
        _read_block,
        chunks=chunks,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
        read=read,
    )


def _read_block(block_info: dict[Any, Any] | None = None, *, read: Callable) -> np.ndarray:
    (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
    return read(y0, x0, y1 - y0, x1 - x0)
