"""The tiled loop shared by the Grad-CAM dock and the slide command: read ahead, explain, in order.

One thread reads the next batch of tiles from the image or slide while the caller's thread
explains the current one, so reading (often from disk and compressed) hides behind the model.
The batches come back in grid order. Stopping early (closing the generator, e.g. a cancelled
dock job) drops the read in flight and starts no other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from napari_gradcam.core.tiling.tiled import TilePlan, TileResults, explain_tiles, read_tiles

if TYPE_CHECKING:
    from napari_gradcam.models import LoadedModel

T = TypeVar("T")


def explained_batches(
    loaded: LoadedModel,
    plan: TilePlan,
    batch_size: int,
    value_range: Sequence[float],
    *,
    read_ahead: bool = True,
) -> Iterator[TileResults]:
    """Explain the planned tiles batch by batch, reading the next batch meanwhile.

    Parameters
    ----------
    loaded : LoadedModel
        The model.
    plan : TilePlan
        The tiles and how they are explained.
    batch_size : int
        Tiles per ``explain()`` call.
    value_range : sequence of float
        Pixel values mapped to [0, 1] (see ``tiled.pixel_range``).
    read_ahead : bool
        Read batch k + 1 in a thread while batch k is explained; False reads in turn.

    Yields
    ------
    TileResults
        One per batch, in grid order.
    """

    def work(tiles: np.ndarray, batch: np.ndarray) -> TileResults:
        return explain_tiles(loaded, tiles, batch, plan.settings, value_range)

    yield from mapped_batches(plan, batch_size, work, read_ahead=read_ahead)


def mapped_batches(
    plan: TilePlan,
    batch_size: int,
    work: Callable[[np.ndarray, np.ndarray], T],
    *,
    read_ahead: bool = True,
) -> Iterator[T]:
    """``work(tiles, indices)`` on each batch of planned tiles, reading the next batch meanwhile.

    The loop of :func:`explained_batches` for any per-batch work (e.g. embedding tiles).
    """
    batches = plan.batches(batch_size)
    if not read_ahead:
        for batch in batches:
            yield work(_read(plan, batch), batch)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-reader")
    try:
        pending: Future[np.ndarray] | None = _submit(pool, plan, batches, 0)
        for index, batch in enumerate(batches):
            tiles = pending.result()
            pending = _submit(pool, plan, batches, index + 1)
            yield work(tiles, batch)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _read(plan: TilePlan, batch: np.ndarray) -> np.ndarray:
    return read_tiles(plan.view, plan.grid.origins[batch], plan.grid.tile)


def _submit(
    pool: ThreadPoolExecutor, plan: TilePlan, batches: list[np.ndarray], index: int
) -> Future[np.ndarray] | None:
    """Start reading batch ``index``, if there is one."""
    return pool.submit(_read, plan, batches[index]) if index < len(batches) else None
