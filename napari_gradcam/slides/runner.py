"""Explain a whole slide headless: tissue, tiles on Dask, stitched map, tile tables, summary.

:func:`explain_slide` drives the tiled run the Grad-CAM dock drives too
(``core.tiling.loop.explain_tiled``) over the whole slide and writes its outputs. Only the
batches in flight and one band of the stitched map are held in memory; the map is written into
its zarr store row by row as the tiles that reach it are done.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari_gradcam.core.explain.preprocess import pixel_range
from napari_gradcam.core.output_files import save_json, save_png
from napari_gradcam.core.progress import Progress, relay
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.tiling.grid import MIN_TISSUE, LevelView
from napari_gradcam.core.tiling.loop import TileBatch, explain_tiled
from napari_gradcam.core.tiling.slide_tissue import overview_source, slide_tissue
from napari_gradcam.core.tiling.tiled import TilePlan, level_view, plan_tiles
from napari_gradcam.models.cache import cached_model
from napari_gradcam.slides.batches import BatchTask, in_order, run_batch
from napari_gradcam.slides.outputs import (
    HeatmapStore,
    SlideOutputs,
    TileCsvWriter,
    save_tile_objects,
)
from napari_gradcam.slides.run_records import TileRows, heatmap_attrs, run_summary
from napari_gradcam.slides.thumbnail import thumbnail_overlay

if TYPE_CHECKING:
    from distributed import Client

    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.slides.lazy_slide import Slide


@dataclass(frozen=True)
class SlideJob:
    """How to explain slides (the command line's options)."""

    model: str = "demo"
    weights: str | None = None
    settings: ExplainSettings = field(default_factory=ExplainSettings)
    mpp: float | None = None
    level: int | None = None
    overlap: float = 0.5
    batch_size: int = 64
    min_tissue: float = MIN_TISSUE
    tissue: bool = True
    window: str = "hann"
    overwrite: bool = False
    max_pixels: int | None = None


MAX_TILES = 2**22
"""The most tiles one slide is cut into (4,194,304: a 200,000 px square slide at 50 % overlap
with 224 px tiles is about 3.2 million); more would take gigabytes just to plan."""


def plan_slide(slide: Slide, job: SlideJob, loaded: LoadedModel) -> TilePlan:
    """Choose the level, find the tissue and lay the tiles over the whole slide.

    The cost is bounded before any pixel is read: a slide whose overview (tissue mask,
    thumbnail) would read a level over the pixel cap, or that would be cut into more than
    :data:`MAX_TILES` tiles, is refused with advice.
    """
    # the thumbnail reads the same overview, so it is checked even without a tissue search
    overview_source(slide.level_shapes, name=slide.name, max_pixels=job.max_pixels)
    level, view = level_view(slide, loaded.card.mpp, mpp=job.mpp, level=job.level)
    tile = loaded.card.input_size or (224, 224)
    check_tile_count(slide.name, view, level, tile, job.overlap)
    rgb = len(slide.level_shapes[0]) == 3 and slide.level_shapes[0][-1] in (3, 4)
    tissue = (
        slide_tissue(slide.levels, slide.downsamples, name=slide.name, max_pixels=job.max_pixels)
        if job.tissue and rgb
        else None
    )
    return plan_tiles(
        loaded,
        view,
        level,
        (0, 0, *slide.shape),
        tissue=tissue,
        overlap=job.overlap,
        min_tissue=job.min_tissue,
        settings=job.settings,
    )


def check_tile_count(
    name: str, view: LevelView, level: int, tile: Sequence[int], overlap: float
) -> None:
    """Raise ``ValueError`` when the level would be cut into more than :data:`MAX_TILES` tiles.

    The count is estimated from the sizes alone (tiles step by ``tile * (1 - overlap)``), so
    nothing is allocated for a slide that is refused.
    """
    if not 0.0 <= overlap < 1.0:
        return  # the tile grid refuses it with its own message
    count = 1
    for size, side in zip(view.shape, tile, strict=True):
        step = max(1, int(side * (1.0 - overlap)))
        count *= max(0, size - side) // step + 1
    if count > MAX_TILES:
        height, width = view.shape
        raise ValueError(
            f"{name} would be cut into about {count:,} tiles at level {level} ({height:,} x "
            f"{width:,} pixels at the model's resolution), more than {MAX_TILES:,}; explain a "
            "coarser level (--mpp or --level), with less --overlap, or a smaller slide"
        )


def explain_slide(
    slide: Slide, job: SlideJob, outputs: SlideOutputs, *, client: Client | None = None
) -> Generator[Progress, None, dict[str, Any]]:
    """Explain every tissue tile of ``slide`` and write its outputs; return the summary.

    Yields a step once the tiles are planned and after each batch.

    Parameters
    ----------
    job : SlideJob
        Model, sampling, tiling and tissue options.
    client : distributed.Client, optional
        Run the batches on this cluster; default: local threads.
    """
    start = time.perf_counter()
    loaded = cached_model(job.model, job.weights)
    plan = plan_slide(slide, job, loaded)
    yield Progress(0, len(plan.explained), f"{len(plan.explained)} tiles to explain")
    store = HeatmapStore(outputs.heatmap, plan.grid.map_shape)
    table = TileCsvWriter(outputs.tiles)
    rows = TileRows(plan, loaded.card.class_name)
    explained: list[list[Any]] = []

    def write(event: Progress | TileBatch) -> Progress | None:
        if isinstance(event, Progress):
            return event
        batch = rows.explained(event.results)
        table.write(batch)
        explained.extend(row for row in batch if row[1] == "explained")
        return None

    try:
        value_range = pixel_range(slide.levels[0].dtype)
        run = explain_tiled(
            loaded,
            plan,
            value_range,
            batch_size=job.batch_size,
            window=job.window,
            out=store.level0,
            batches=_remote_batches(slide, plan, job, value_range, client) if client else None,
        )
        stitched = yield from relay(run, write)
        table.write(rows.rest())
        attrs = heatmap_attrs(slide, plan, job.model, loaded.card, stitched.maximum)
        store.publish(attrs, job.overwrite)
    except BaseException:
        store.discard()
        table.discard()
        raise
    table.publish()
    save_tile_objects(outputs.qupath, explained, job.overwrite)
    thumbnail = thumbnail_overlay(slide, outputs.heatmap, max_pixels=job.max_pixels)
    save_png(outputs.overlay, thumbnail)
    summary = run_summary(slide, plan, job, attrs, outputs, time.perf_counter() - start)
    save_json(outputs.summary, summary)
    return summary


def _remote_batches(
    slide: Slide,
    plan: TilePlan,
    job: SlideJob,
    value_range: tuple[float, float],
    client: Client,
) -> Iterator[Any]:
    """The batches explained on the cluster's workers, in order."""
    tasks = (
        BatchTask(
            slide,
            plan.level,
            plan.view.resample,
            plan.grid.origins[batch],
            plan.grid.tile,
            batch,
            (job.model, job.weights),
            plan.batch_settings(batch),
            value_range,
        )
        for batch in plan.batches(job.batch_size)
    )
    return in_order(run_batch, tasks, client=client)
