"""The one driver of a tiled explanation, for the Grad-CAM dock and the slide command alike.

:func:`explain_tiled` explains a plan's tiles (a box of a napari plane, or a whole slide: a
pyramid, a box, its tissue and the settings), stitches their maps and yields its progress and
each batch as it comes. Locally one thread reads the next batch of tiles while the caller's
thread explains the current one, so reading (often from disk and compressed) hides behind the
model. The batches come back in grid order. Stopping early (closing the generator, e.g. a
cancelled dock job) drops the read in flight and starts no other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from napari_gradcam.core.progress import Progress
from napari_gradcam.core.tiling.grid import Stitcher
from napari_gradcam.core.tiling.tiled import TilePlan, TileResults, explain_tile_batch, read_tiles

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel

T = TypeVar("T")


@dataclass(frozen=True)
class TileBatch:
    """One explained batch, and the copied map ``rows`` from ``first_row`` that it changed."""

    results: TileResults
    first_row: int
    rows: np.ndarray | None = None


@dataclass(frozen=True)
class StitchedMap:
    """A tiled run's map: the stitched array (the ``out`` it was given), its maximum, its time."""

    cam: Any
    maximum: float
    seconds: float


def explain_tiled(
    loaded: LoadedModel,
    plan: TilePlan,
    value_range: Sequence[float],
    *,
    batch_size: int,
    window: str = "hann",
    out: Any = None,
    batches: Iterable[TileResults] | None = None,
    watch_rows: bool = False,
) -> Generator[Progress | TileBatch, None, StitchedMap]:
    """Explain and stitch the planned tiles; yield a step and a :class:`TileBatch` per batch.

    ``value_range``: pixel values mapped to [0, 1] (``preprocess.pixel_range``); ``window``: the
    blending (``grid.Stitcher``); ``out``: where the map is written row by row (e.g. a zarr
    array; default a new array). ``batches``: the batches explained elsewhere (a Dask cluster),
    in grid order; default: :func:`explained_batches` here. ``watch_rows`` copies the rows each
    batch changed into its event, to draw the map as it fills in.
    """
    stitcher = Stitcher(plan.grid, window, out=out)
    if batches is None:
        batches = explained_batches(loaded, plan, batch_size, value_range)
    total, done = len(plan.explained), 0
    started = time.perf_counter()
    for results in batches:
        start, stop = stitcher.add(results.indices, results.cams)
        done += len(results.indices)
        left = (time.perf_counter() - started) / done * (total - done)
        remaining = f", {duration(left)} left" if done < total else ""
        yield Progress(done, total, f"{done}/{total} tiles explained{remaining}")
        yield TileBatch(results, start, stitcher.rows(start, stop) if watch_rows else None)
    cam = stitcher.finish()
    return StitchedMap(cam, stitcher.maximum, time.perf_counter() - started)


def duration(seconds: float) -> str:
    """A rounded duration for people: ``"under a minute"``, ``"about 4 min"``, ``"about 2 h"``."""
    if seconds < 60:
        return "under a minute" if seconds >= 10 else "a few seconds"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def explained_batches(
    loaded: LoadedModel,
    plan: TilePlan,
    batch_size: int,
    value_range: Sequence[float],
    *,
    read_ahead: bool = True,
) -> Iterator[TileResults]:
    """Explain the planned tiles batch by batch, in grid order, reading the next batch meanwhile.

    ``read_ahead``: read batch k + 1 in a thread while batch k is explained (False: in turn).
    """

    def work(tiles: np.ndarray, batch: np.ndarray) -> TileResults:
        return explain_tile_batch(loaded, tiles, batch, plan.batch_settings(batch), value_range)

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
