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
from napari_gradcam.core.tiling.tiled import TileResults, explain_tile_batch, read_tiles
from napari_gradcam.models.cache import cached_model

if TYPE_CHECKING:
    from distributed import Client

    from napari_gradcam.slides.lazy_slide import Slide

LOCAL_THREADS = 2


@dataclass(frozen=True)
class SlideBatch:
    """Where a Dask worker reads one batch of tiles (picklable: the slide pickles as its path).

    ``origins`` are the (B, 2) tile corners in sampled pixels of ``level``, resampled by
    ``resample`` level pixels per sampled pixel.
    """

    slide: Slide
    level: int
    resample: float
    origins: np.ndarray
    tile: tuple[int, int]

    def read(self) -> np.ndarray:
        """The (B, H, W[, C]) pixels of the batch's tiles."""
        levels, downsamples = self.slide.levels, self.slide.downsamples
        view = LevelView(levels[self.level], downsamples[self.level], self.resample)
        return read_tiles(view, self.origins, self.tile)


@dataclass(frozen=True)
class BatchTask(SlideBatch):
    """One batch to explain on a Dask worker.

    ``indices``: the tiles' grid indices; ``model``: its (spec, weights); ``value_range``: the
    pixel values mapped to [0, 1].
    """

    indices: np.ndarray
    model: tuple[str, str | None]
    settings: ExplainSettings
    value_range: tuple[float, float]


def run_batch(task: BatchTask) -> TileResults:
    """Read and explain one batch of tiles (runs on a Dask worker)."""
    loaded = cached_model(*task.model)
    return explain_tile_batch(loaded, task.read(), task.indices, task.settings, task.value_range)


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
