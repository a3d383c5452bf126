"""Run batches of tiles as Dask tasks and hand back their results in order, a few at a time.

With a ``distributed.Client`` the batches go to its workers, each of which loads the model
once (``models.cache``); without one, local Dask threads. Only ``window`` batches are in
flight, so memory does not grow with the slide. (A local slide run explains its batches in the
tiled driver's read-ahead loop instead, ``core.tiling.loop``.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.tiling.grid import LevelView
from napari_gradcam.core.tiling.tiled import TileResults, explain_tiles, read_tiles
from napari_gradcam.models.cache import cached_model

if TYPE_CHECKING:
    from distributed import Client

    from napari_gradcam.slides.reader import Slide

LOCAL_THREADS = 2


@dataclass(frozen=True)
class BatchTask:
    """Everything a worker needs to explain one batch (small and picklable).

    Attributes
    ----------
    slide : Slide
        The slide (pickled as its path).
    level : int
        The pyramid level read.
    resample : float
        Level pixels per sampled pixel.
    origins : numpy.ndarray
        (B, 2) tile corners in sampled pixels.
    indices : numpy.ndarray
        (B,) grid indices of the tiles.
    tile : tuple of int
        Tile size.
    model : tuple of str
        ``(spec, weights)`` of the model.
    settings : ExplainSettings
        How the tiles are explained.
    value_range : tuple of float
        Pixel values mapped to [0, 1].
    """

    slide: Slide
    level: int
    resample: float
    origins: np.ndarray
    indices: np.ndarray
    tile: tuple[int, int]
    model: tuple[str, str | None]
    settings: ExplainSettings
    value_range: tuple[float, float]


def run_batch(task: BatchTask) -> TileResults:
    """Read and explain one batch of tiles (runs on a Dask worker)."""
    view = LevelView(
        task.slide.levels[task.level], task.slide.downsamples[task.level], task.resample
    )
    tiles = read_tiles(view, task.origins, task.tile)
    loaded = cached_model(*task.model)
    return explain_tiles(loaded, tiles, task.indices, task.settings, task.value_range)


def in_order(
    function: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    client: Client | None = None,
    window: int | None = None,
) -> Iterator[Any]:
    """Yield ``function(item)`` for every item, in order, with ``window`` items in flight.

    The default window is two items per thread: the cluster's, or :data:`LOCAL_THREADS`.
    """
    if client is None:
        yield from _local(function, items, window or 2 * LOCAL_THREADS)
    else:
        threads = sum(client.nthreads().values())
        yield from _distributed(function, items, client, window or max(2 * threads, 2))


def _local(function: Callable, items: Iterable[Any], window: int) -> Iterator[Any]:
    import dask

    chunk: list[Any] = []
    for item in items:
        # traverse=False: a slide's own dask arrays are data for the task, not its inputs
        argument = dask.delayed(item, traverse=False)
        chunk.append(dask.delayed(function, pure=False)(argument))
        if len(chunk) == window:
            yield from _compute_local(chunk)
            chunk = []
    yield from _compute_local(chunk)


def _compute_local(tasks: Sequence[Any]) -> tuple[Any, ...]:
    import dask

    if not tasks:
        return ()
    return dask.compute(*tasks, scheduler="threads", num_workers=LOCAL_THREADS)


def _distributed(
    function: Callable, items: Iterable[Any], client: Client, window: int
) -> Iterator[Any]:
    pending: deque[Any] = deque()
    try:
        for item in items:
            pending.append(client.submit(function, item, pure=False))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
