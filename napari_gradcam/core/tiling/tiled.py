"""Tiled explanation of a region larger than the model input: plan, read, explain in batches.

The same pieces serve the napari widget (a loop in a worker thread) and the slide runner
(batches as Dask tasks): :func:`plan_tiles` lays the grid and judges tiles by their tissue,
:func:`read_tiles` reads a batch of tiles, :func:`explain_tile_batch` explains it with one
``explain()`` call, and :class:`~napari_gradcam.core.tiling.grid.Stitcher` blends the maps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_gradcam.core.explain.hooks import model_device, model_lock
from napari_gradcam.core.explain.pipeline import explain, map_geometry
from napari_gradcam.core.explain.predict import prediction_facts
from napari_gradcam.core.explain.preprocess import to_batch
from napari_gradcam.core.regions.target_region import check_same_extent
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import OutputRegion
from napari_gradcam.core.tiling.grid import MIN_TISSUE, LevelView, TileGrid, tile_grid
from napari_gradcam.core.tiling.sampling import sampling_for
from napari_gradcam.core.tiling.tile_regions import tile_region_masks, tiles_in_region
from napari_gradcam.core.tiling.tile_stats import (
    energy_concentration,
    map_entropy,
    noise_flags,
    roughness,
)

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.core.tiling.slide_tissue import TissueMap


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one region and which of them are explained.

    Attributes
    ----------
    view : LevelView
        The pyramid level (and resampling) the tiles are read from.
    level : int
        Index of that level.
    grid : TileGrid
        All tiles, row-major.
    tissue : numpy.ndarray
        (N,) share of tissue under each tile (1 where tissue was not looked for).
    explained : numpy.ndarray
        Indices of the tiles to explain, ascending; the others are skipped as background, or
        as outside the region of an ``OutputRegion`` target.
    settings : ExplainSettings
        How tiles are explained, with the layer resolved to its name.
    in_region : numpy.ndarray, optional
        (N,) whether each tile reaches the target's output region (``None``: no region).
    """

    view: LevelView
    level: int
    grid: TileGrid
    tissue: np.ndarray
    explained: np.ndarray
    settings: ExplainSettings
    in_region: np.ndarray | None = None

    @property
    def origin(self) -> tuple[float, float]:
        """Level-0 pixel of the map's top-left corner."""
        py, px = self.view.pixel_size
        return (self.grid.region[0] * py, self.grid.region[1] * px)

    @property
    def stride(self) -> tuple[float, float]:
        """Level-0 pixels per map cell."""
        py, px = self.view.pixel_size
        return (self.grid.cell * py, self.grid.cell * px)

    def boxes(self) -> np.ndarray:
        """(N, 4) level-0 boxes of all tiles."""
        return self.grid.boxes(self.view.pixel_size)

    @property
    def outside_region(self) -> int:
        """How many tiles were skipped because the target's output region misses them."""
        return 0 if self.in_region is None else int(np.count_nonzero(~self.in_region))

    def batches(self, size: int) -> list[np.ndarray]:
        """The explained tiles in batches of ``size``, in grid order."""
        return [self.explained[i : i + size] for i in range(0, len(self.explained), size)]

    def batch_settings(self, indices: np.ndarray) -> ExplainSettings:
        """The settings of the tiles ``indices``: an ``OutputRegion`` target gets their crops.

        The region's one mask over the image becomes a ``(B, th, tw)`` mask, one per tile
        (``tile_regions.tile_region_masks``); every other target is the same for all tiles.
        """
        target = self.settings.target
        if self.in_region is None:
            return self.settings
        crops = tile_region_masks(
            target.mask,
            self.view.level0_shape,
            self.grid.origins[indices],
            self.grid.tile,
            self.view.pixel_size,
        )
        return self.settings.replace(target=replace(target, mask=crops))


@dataclass(frozen=True)
class TileResults:
    """Maps and numbers of one batch of tiles.

    Attributes
    ----------
    indices : numpy.ndarray
        (B,) grid indices of the tiles.
    cams : numpy.ndarray
        (B, h, w) raw maps (float32, not normalised).
    facts : dict of str to numpy.ndarray
        (B,) columns named in :data:`~napari_gradcam.core.tiling.tile_stats.FACTS`.
    seconds : float
        Time taken to explain the batch (reading excluded).
    names : tuple of str
        What each tile's map explains: its class's name, or the target in words ("prompt
        'dense nuclei'", "tumour vs stroma"); empty when not recorded.
    """

    indices: np.ndarray
    cams: np.ndarray
    facts: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    names: tuple[str, ...] = ()


def preprocess_tiles(
    tiles: np.ndarray, card: Any, value_range: Sequence[float], device: torch.device
) -> torch.Tensor:
    """Turn (B, H, W[, C]) pixels into the model's normalised (B, C, H, W) float batch.

    The same path as one image's (:func:`~napari_gradcam.core.explain.preprocess.to_batch`),
    with the region's ``value_range`` (``preprocess.pixel_range``) so every tile is scaled alike.
    """
    return to_batch(tiles, card, device, stacked=True, value_range=value_range)


def probe_map(loaded: LoadedModel, layer: str | None, method: str) -> tuple[str, int, tuple]:
    """Return ``(layer name, cell, (h, w))``: the map geometry of one input-sized tile.

    From :func:`~napari_gradcam.core.explain.pipeline.map_geometry` (a cached dry forward to
    the layer, or occlusion's grid), not from explaining a blank tile.
    """
    height, width = loaded.card.input_size or (224, 224)
    with model_lock(loaded.module):
        geometry = map_geometry(loaded, (height, width), method=method, layer=layer)
    if geometry.stride[0] != geometry.stride[1] or geometry.stride[0] % 1:
        raise ValueError(
            f"layer {geometry.layer!r} maps {height} x {width} pixels to {geometry.shape} "
            "cells, not a whole number of pixels per cell; choose another layer to tile"
        )
    return geometry.layer, int(geometry.stride[0]), geometry.shape


def level_view(
    pyramid: Any, model_mpp: float | None, *, mpp: float | None = None, level: int | None = None
) -> tuple[int, LevelView]:
    """The level of ``pyramid`` (a slide or an image plane) that tiles are read from, and its view.

    At the model's ``model_mpp`` unless ``mpp`` or ``level`` is asked for (``sampling_for``);
    ``pyramid`` has ``levels``, ``downsamples`` and ``mpp``.
    """
    index, resample = sampling_for(
        pyramid.downsamples, pyramid.mpp, model_mpp, mpp=mpp, level=level
    )
    return index, LevelView(pyramid.levels[index], pyramid.downsamples[index], resample)


def plan_tiles(
    loaded: LoadedModel,
    view: LevelView,
    level: int,
    box: Sequence[float],
    *,
    settings: ExplainSettings,
    tissue: TissueMap | None = None,
    overlap: float = 0.5,
    min_tissue: float = MIN_TISSUE,
) -> TilePlan:
    """Lay model-sized tiles over a level-0 box of ``view`` and choose the tissue tiles.

    Parameters
    ----------
    loaded : LoadedModel
        The model (its card gives the tile size).
    view : LevelView
        The level the tiles are read from.
    level : int
        Its index (recorded).
    box : sequence of float
        ``(y0, x0, y1, x1)`` of the region in level-0 pixels.
    settings : ExplainSettings
        Method and layer (the layer fixes the map's cell size).
    tissue : TissueMap, optional
        The slide's tissue; without it every tile is explained.
    overlap : float
        Share of a tile overlapping its neighbour.
    min_tissue : float
        Tiles with less tissue are skipped.
    """
    region = view.region_from_level0(box)
    if region[2] <= region[0] or region[3] <= region[1]:
        raise ValueError(
            f"the region {tuple(box)} (level-0 pixels) lies outside the image; choose a region "
            "on the image"
        )
    layer, cell, tile_cells = probe_map(loaded, settings.layer, settings.method)
    tile = loaded.card.input_size or (224, 224)
    grid = tile_grid(region, tile, cell, tile_cells, overlap)
    boxes = grid.boxes(view.pixel_size)
    shares = tissue.fractions(boxes) if tissue else np.ones(grid.n_tiles, np.float32)
    wanted = shares >= min_tissue if tissue else np.ones(grid.n_tiles, bool)
    in_region = _tiles_in_region(settings.target, view, grid)
    if in_region is not None:
        wanted &= in_region
    settings = settings.replace(layer=layer)
    return TilePlan(view, level, grid, shares, np.flatnonzero(wanted), settings, in_region)


def _tiles_in_region(target: object, view: LevelView, grid: TileGrid) -> np.ndarray | None:
    """Which tiles an ``OutputRegion`` target's mask reaches; ``None`` for any other target."""
    if not isinstance(target, OutputRegion) or target.mask is None:
        return None
    mask = np.asarray(target.mask)
    if mask.ndim != 2:
        raise ValueError(
            f"a tiled run takes one region mask over the whole image, not shape {mask.shape}; "
            "give the output region as one (H, W) mask in the image's pixels"
        )
    check_same_extent(mask.shape, view.level0_shape, "of the output region")
    return tiles_in_region(mask, view.level0_shape, grid.origins, grid.tile, view.pixel_size)


def read_tiles(view: LevelView, origins: np.ndarray, tile: Sequence[int]) -> np.ndarray:
    """Read the tiles at ``origins`` (B, H, W[, C]); each band of neighbouring tiles is read once.

    A run of neighbouring tiles on one row is one read. Without resampling, consecutive runs
    whose bounding box holds no more pixels than their strips together (overlapping rows, e.g.
    half-overlapping tiles) are one read too, so a compressed slide decodes each of its blocks
    fewer times. The tiles equal the crops of the level either way.

    Parameters
    ----------
    view : LevelView
        The level the tiles are read from.
    origins : numpy.ndarray
        (B, 2) top-left corners in sampled pixels, row-major.
    tile : sequence of int
        ``(height, width)`` of a tile.
    """
    th, tw = (int(n) for n in tile)
    runs = _runs(origins, tw)
    bands = _bands(origins, runs, (th, tw)) if view.resample == 1.0 else [[r] for r in runs]
    tiles: list[np.ndarray] = []
    for band in bands:
        y0, x0, y1, x1 = _box(origins, np.concatenate(band), (th, tw))
        pixels = view.read(y0, x0, y1, x1)
        tiles.extend(
            pixels[y - y0 : y - y0 + th, x - x0 : x - x0 + tw]
            for run in band
            for y, x in origins[run]
        )
    return np.stack(tiles)


def _box(origins: np.ndarray, indices: np.ndarray, tile: tuple[int, int]) -> tuple[int, ...]:
    """``(y0, x0, y1, x1)`` around the tiles at ``origins[indices]``."""
    low = origins[indices].min(axis=0)
    high = origins[indices].max(axis=0) + tile
    return int(low[0]), int(low[1]), int(high[0]), int(high[1])


def _bands(
    origins: np.ndarray, runs: list[np.ndarray], tile: tuple[int, int]
) -> list[list[np.ndarray]]:
    """Group consecutive runs while their bounding box holds no more pixels than their strips."""

    def area(box: tuple[int, ...]) -> int:
        return (box[2] - box[0]) * (box[3] - box[1])

    bands: list[list[np.ndarray]] = []
    strips = 0
    for run in runs:
        strip = area(_box(origins, run, tile))
        if bands and area(_box(origins, np.concatenate([*bands[-1], run]), tile)) <= strips + strip:
            bands[-1].append(run)
            strips += strip
        else:
            bands.append([run])
            strips = strip
    return bands


def _runs(origins: np.ndarray, width: int) -> list[np.ndarray]:
    """Split row-major tile origins into runs on one row with no gap wider than a tile."""
    breaks = (np.diff(origins[:, 0]) != 0) | (np.diff(origins[:, 1]) > width)
    return np.split(np.arange(len(origins)), np.flatnonzero(breaks) + 1)


def explain_tile_batch(
    loaded: LoadedModel,
    tiles: np.ndarray,
    indices: np.ndarray,
    settings: ExplainSettings,
    value_range: Sequence[float],
) -> TileResults:
    """Explain a batch of tiles with one ``explain()`` call; add per-tile numbers.

    Parameters
    ----------
    tiles : numpy.ndarray
        (B, H, W[, C]) pixels.
    indices : numpy.ndarray
        (B,) grid indices of the tiles (kept with the results).
    settings : ExplainSettings
        Method, layer, target, TTA, precision and the method's options.
    value_range : sequence of float
        Pixel values mapped to [0, 1] (see :func:`pixel_range`).
    """
    start = time.perf_counter()
    batch = preprocess_tiles(tiles, loaded.card, value_range, model_device(loaded.module))
    with model_lock(loaded.module):
        result = explain(loaded, batch, settings)
    cams = np.asarray(result.cam, dtype=np.float32)
    classes = {**prediction_facts(result.logits), "target_index": result.targets}
    facts = {
        **(no_class_facts(len(cams)) if loaded.card.output == "embedding" else classes),
        "target_probability": result.probabilities.astype(np.float32),
        "score": result.scores.astype(np.float32),
        "entropy": (entropy := map_entropy(cams)),
        "energy": energy_concentration(cams),
        "roughness": roughness(cams),
        **noise_flags(cams, entropy),
    }
    seconds = time.perf_counter() - start
    return TileResults(np.asarray(indices), cams, facts, seconds, tuple(result.target_names))


def no_class_facts(count: int) -> dict[str, np.ndarray]:
    """The class facts of an embedding model, which has no classes: index -1, probability NaN.

    Its tiles' ``score`` is their similarity (to a prompt or a reference region).
    """
    unknown = np.full(count, np.nan, dtype=np.float32)
    none = np.full(count, -1, np.int64)
    return {"class_index": none, "probability": unknown, "margin": unknown, "target_index": none}
