"""Tile embeddings of a slide, computed once and cached on disk.

The encoder is a slide model's, or any model whose module returns (N, D) embeddings, such as a
vision-language model's image tower (``slides.tile_encoder``). :func:`embed_slide` yields its
steps and returns the embeddings (the MIL run and the similarity map drive it);
:func:`slide_embeddings` runs it where nobody watches. The tiles are the slide tiling's tissue
tiles (``slides.runner.plan_slide``) at the card's tile size and mpp. Locally, one thread reads
the next batch while the encoder embeds the current one (``core.tiling.loop``); with a Dask
client the batches run on its workers (``slides.batches``), each of which loads the slide model
through the one model cache (again when a file of it changes). The encoder runs under
``torch.inference_mode()`` inside ``frozen_model`` (its lock). See ``slides.embedding_cache``
for the cache's keys.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_gradcam.core.explain.finite import check_finite
from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.core.explain.preprocess import pixel_range
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.progress import Progress, run_to_end
from napari_gradcam.core.tiling.grid import MIN_TISSUE, LevelView, TileGrid
from napari_gradcam.core.tiling.loop import mapped_batches
from napari_gradcam.core.tiling.tiled import TilePlan, preprocess_tiles, read_tiles
from napari_gradcam.models.cache import cached_slide_model
from napari_gradcam.models.slide_model import SlideModel, check_slide_mpp
from napari_gradcam.slides.batches import SlideBatch, in_order
from napari_gradcam.slides.embedding_cache import (
    default_cache_dir,
    embedding_key,
    read_cached,
    slide_fingerprint,
    write_cached,
)
from napari_gradcam.slides.tile_encoder import TileEncoder, tile_encoder

if TYPE_CHECKING:
    from distributed import Client

    from napari_gradcam.slides.lazy_slide import Slide


@dataclass(frozen=True)
class SlideEmbeddings:
    """One slide's tile embeddings and where each tile lies.

    Attributes
    ----------
    embeddings : numpy.ndarray
        (N, D) float32, one row per tissue tile, in grid order.
    grid : TileGrid
        The embedded tiles (``grid.origins`` in sampled pixels of the read level).
    pixel_size : tuple of float
        Level-0 pixels per sampled pixel ``(y, x)``.
    tissue : numpy.ndarray
        (N,) share of tissue under each tile.
    cached : bool
        Whether the embeddings came from the cache.
    """

    embeddings: np.ndarray
    grid: TileGrid
    pixel_size: tuple[float, float]
    level: int
    tissue: np.ndarray
    key: str
    cached: bool = False

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) level-0 boxes ``(y0, x0, y1, x1)`` of the tiles."""
        return self.grid.boxes(self.pixel_size)

    @property
    def coords(self) -> np.ndarray:
        """(N, 2) level-0 ``(y, x)`` of the tiles' top-left corners (for aggregators)."""
        return self.boxes[:, :2]


def slide_embeddings(
    slide: Slide, model: SlideModel | LoadedModel, **options: Any
) -> SlideEmbeddings:
    """The embeddings of the slide's tissue tiles, where nobody watches the steps.

    The arguments are those of :func:`embed_slide`.
    """
    return run_to_end(embed_slide(slide, model, **options))


def embed_slide(
    slide: Slide,
    model: SlideModel | LoadedModel,
    *,
    card: str | Path | None = None,
    overlap: float = 0.0,
    min_tissue: float = MIN_TISSUE,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    client: Client | None = None,
) -> Generator[Progress, None, SlideEmbeddings]:
    """The embeddings of the slide's tissue tiles: from the cache, or computed and cached.

    Yields a step after each embedded batch (nothing when the cache holds the slide) and
    returns the embeddings. Closing the generator early stops reading and embedding, and caches
    nothing; so do NaN or infinite embeddings, which raise ``NonFiniteError`` naming the likely
    cause.

    Parameters
    ----------
    model : SlideModel or LoadedModel
        The slide model (its encoder, tile size and mpp), or a model whose module returns
        (N, D) embeddings, with its card's input size (square) and mpp.
    card : str or Path, optional
        The slide model's card file; needed to run on a Dask ``client`` (workers load it).
    overlap : float
        Share of a tile overlapping its neighbour (0: a partition, as MIL models are trained).
    min_tissue : float
        Tiles with less tissue are left out.
    batch_size : int
        Tiles per encoder call.
    cache_dir : str or Path, optional
        The cache folder (default ``embedding_cache.default_cache_dir()``).
    client : distributed.Client, optional
        Embed on this cluster's workers (a slide model only).
    """
    encoder = tile_encoder(model)
    check_slide_mpp(encoder.mpp, slide.mpp)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    tiling = {"overlap": overlap, "min_tissue": min_tissue, "tile": encoder.tile_size}
    key = embedding_key(slide_fingerprint(slide), encoder.identity, tiling)
    cached = read_cached(folder, key, encoder.width)
    if cached is not None:
        return _from_arrays(cached, key)
    plan = _plan(slide, encoder.model, overlap, min_tissue)
    if client is not None and (card is None or encoder.slide_model is None):
        raise ValueError("embedding on a Dask cluster needs a slide model and its card file")
    rows, done, total = [], 0, len(plan.explained)
    for batch in _batches(slide, plan, encoder, batch_size, client, card):
        rows.append(batch)
        done += len(batch)
        yield Progress(done, total, f"embedding tiles: {done}/{total}")
    embeddings = np.concatenate(rows) if rows else np.zeros((0, encoder.width), np.float32)
    module, model_card = encoder.model.module, encoder.model.card
    check_finite(embeddings, "the encoder's embeddings", module=module, card=model_card)
    result = _result(plan, embeddings, key)
    write_cached(folder, key, _to_arrays(result))
    return result


def embed_tiles(
    encoder: LoadedModel, tiles: np.ndarray, value_range: tuple[float, float]
) -> np.ndarray:
    """(B, D) float32 embeddings of (B, H, W, C) pixels, one inference-mode forward."""
    device = next(encoder.module.parameters()).device
    batch = preprocess_tiles(tiles, encoder.card, value_range, device)
    with frozen_model(encoder.module), torch.inference_mode():
        out = encoder.module(batch)
    return out.float().cpu().numpy()


def tile_pixels(slide: Slide, tiles: SlideEmbeddings, index: int) -> np.ndarray:
    """The (H, W, C) pixels of one embedded tile, read as the encoder saw them."""
    downsample = slide.downsamples[tiles.level]
    view = LevelView(slide.levels[tiles.level], downsample, tiles.pixel_size[0] / downsample[0])
    return read_tiles(view, tiles.grid.origins[index : index + 1], tiles.grid.tile)[0]


def _plan(slide: Slide, encoder: LoadedModel, overlap: float, min_tissue: float) -> TilePlan:
    from napari_gradcam.slides.runner import SlideJob, plan_slide

    job = SlideJob(overlap=overlap, min_tissue=min_tissue)
    plan = plan_slide(slide, job, encoder)
    if len(plan.explained) == 0:
        raise ValueError(
            f"{slide.name} has no tile with at least {min_tissue:.0%} tissue; lower the tissue "
            "threshold, or check that this is a tissue slide"
        )
    return plan


def _batches(
    slide: Slide,
    plan: TilePlan,
    encoder: TileEncoder,
    batch_size: int,
    client: Client | None,
    card: str | Path | None,
) -> Iterator[np.ndarray]:
    value_range = pixel_range(slide.levels[0].dtype)
    if client is None:
        return mapped_batches(
            plan, batch_size, lambda tiles, _batch: embed_tiles(encoder.model, tiles, value_range)
        )
    tasks = (
        EmbedTask(
            slide,
            plan.level,
            plan.view.resample,
            plan.grid.origins[batch],
            plan.grid.tile,
            str(card),
            value_range,
            encoder.slide_model.trust_code,
        )
        for batch in plan.batches(batch_size)
    )
    return in_order(run_embed_task, tasks, client=client)


@dataclass(frozen=True)
class EmbedTask(SlideBatch):
    """One batch to embed on a Dask worker: the slide model's card and the pixel value range."""

    card: str
    value_range: tuple[float, float]
    trust_code: bool = False


def run_embed_task(task: EmbedTask) -> np.ndarray:
    """Read and embed one batch of tiles (runs on a Dask worker)."""
    model = cached_slide_model(task.card, trust_code=task.trust_code)
    return embed_tiles(model.encoder, task.read(), task.value_range)


def _result(plan: TilePlan, embeddings: np.ndarray, key: str) -> SlideEmbeddings:
    grid = plan.grid
    kept = TileGrid(
        grid.region, grid.tile, grid.step, grid.cell, grid.tile_cells, grid.origins[plan.explained]
    )
    pixel_size = tuple(float(v) for v in plan.view.pixel_size)
    return SlideEmbeddings(
        embeddings,
        kept,
        pixel_size,
        plan.level,
        plan.tissue[plan.explained].astype(np.float32),
        key,
    )


def _to_arrays(result: SlideEmbeddings) -> dict[str, Any]:
    grid = result.grid
    return {
        "embeddings": result.embeddings.astype(np.float32),
        "origins": grid.origins,
        "region": np.asarray(grid.region),
        "tile": np.asarray(grid.tile),
        "step": np.asarray(grid.step),
        "cell": np.asarray(grid.cell),
        "tile_cells": np.asarray(grid.tile_cells),
        "pixel_size": np.asarray(result.pixel_size),
        "level": np.asarray(result.level),
        "tissue": result.tissue,
    }


def _from_arrays(arrays: dict[str, np.ndarray], key: str) -> SlideEmbeddings:
    def ints(name: str) -> tuple[int, ...]:
        return tuple(int(v) for v in arrays[name])

    grid = TileGrid(
        ints("region"),
        ints("tile"),
        ints("step"),
        int(arrays["cell"]),
        ints("tile_cells"),
        arrays["origins"].astype(np.int64),
    )
    pixel_size = tuple(float(v) for v in arrays["pixel_size"])
    return SlideEmbeddings(
        arrays["embeddings"],
        grid,
        pixel_size,
        int(arrays["level"]),
        arrays["tissue"],
        key,
        cached=True,
    )
