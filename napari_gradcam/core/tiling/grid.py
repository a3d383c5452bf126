"""Tile grids over a region, the pixels of a pyramid level they read, and stitching.

Three pixel grids meet here:

* **level-0 pixels**: the image layer's data coordinates (and the slide's full resolution);
* **level pixels**: one pyramid level, ``downsample`` level-0 pixels each;
* **sampled pixels**: what the model sees, ``resample`` level pixels each (1 unless the slide
  has no level at the model's microns per pixel).

Tiles lie on the sampled grid at multiples of the map's cell (the model's stride), so every
tile map falls on one common map grid and overlapping maps can be blended cell by cell. The
blended map is raw (one normalisation for the whole region is left to the display).
numpy only.

Examples
--------
>>> grid = tile_grid((0, 0, 200, 300), tile=(96, 96), cell=8, tile_cells=(12, 12))
>>> grid.step, grid.n_tiles, grid.map_shape
((48, 48), 24, (25, 37))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_TISSUE = 0.1
"""Tiles with a smaller share of tissue are skipped (recorded, not explained)."""

WINDOWS = ("hann", "mean")
"""Tile blending weights: ``hann`` (a squared-sine taper that sums to one at 50 % overlap and
plays down tile borders) or ``mean`` (every cell of every tile counts the same)."""


def as_numpy(block: Any) -> np.ndarray:
    """Return the pixels of a (lazy) array slice; dask slices run here, in this thread."""
    compute = getattr(block, "compute", None)
    return compute(scheduler="synchronous") if compute else np.asarray(block)


@dataclass(frozen=True)
class LevelView:
    """One pyramid level seen at the model's pixel size.

    Attributes
    ----------
    data : array-like
        ``(H, W)`` or ``(H, W, C)`` pixels of the level; slicing it is expected to be lazy
        (numpy, zarr or dask arrays).
    downsample : tuple of float
        Level-0 pixels per level pixel ``(dy, dx)``.
    resample : float
        Level pixels per sampled pixel (>= 1; 1 reads the level as it is).
    """

    data: Any
    downsample: tuple[float, float] = (1.0, 1.0)
    resample: float = 1.0

    @property
    def pixel_size(self) -> tuple[float, float]:
        """Level-0 pixels per sampled pixel ``(py, px)``."""
        return (self.downsample[0] * self.resample, self.downsample[1] * self.resample)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in sampled pixels."""
        height, width = self.data.shape[:2]
        return (math.floor(height / self.resample), math.floor(width / self.resample))

    @property
    def level0_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the whole image in level-0 pixels."""
        height, width = self.data.shape[:2]
        return (round(height * self.downsample[0]), round(width * self.downsample[1]))

    def region_from_level0(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """Return the sampled pixels ``(y0, x0, y1, x1)`` that cover a level-0 box, clipped."""
        py, px = self.pixel_size
        height, width = self.shape
        y0, x0 = math.floor(box[0] / py + 1e-9), math.floor(box[1] / px + 1e-9)
        y1 = min(math.ceil(box[2] / py - 1e-9), height)
        x1 = min(math.ceil(box[3] / px - 1e-9), width)
        return (max(y0, 0), max(x0, 0), y1, x1)

    def read(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        """Read sampled pixels ``[y0:y1, x0:x1]`` (resampled with area averaging if needed)."""
        r = self.resample
        pixels = as_numpy(
            self.data[
                math.floor(y0 * r) : math.ceil(y1 * r), math.floor(x0 * r) : math.ceil(x1 * r)
            ]
        )
        if r == 1.0:
            return pixels
        return area_resize(pixels, (y1 - y0, x1 - x0))


def area_resize(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Shrink ``pixels`` to ``shape``.

    Block means by the whole factor, then bilinear for the rest: fast, and no aliasing from
    skipped pixels.
    """
    from skimage.transform import downscale_local_mean, resize

    factor = max(1, min(pixels.shape[0] // shape[0], pixels.shape[1] // shape[1]))
    blocks = (factor, factor, *([1] * (pixels.ndim - 2)))
    averaged = downscale_local_mean(pixels, blocks) if factor > 1 else pixels
    full = (*shape, *pixels.shape[2:])
    resized = resize(averaged, full, order=1, anti_aliasing=False, preserve_range=True)
    return resized.round().astype(pixels.dtype) if pixels.dtype.kind in "ui" else resized


@dataclass(frozen=True)
class TileGrid:
    """Tiles of one size over a region of sampled pixels, in row-major order.

    Attributes
    ----------
    region : tuple of int
        ``(y0, x0, y1, x1)`` of the region in sampled pixels.
    tile : tuple of int
        ``(height, width)`` of a tile (the model's input size).
    step : tuple of int
        Distance between neighbouring tiles; a multiple of ``cell``.
    cell : int
        Sampled pixels per map cell (the model's stride at the explained layer).
    tile_cells : tuple of int
        ``(h, w)`` of one tile's map.
    origins : numpy.ndarray
        (N, 2) int64 top-left corners of the tiles in sampled pixels.
    """

    region: tuple[int, int, int, int]
    tile: tuple[int, int]
    step: tuple[int, int]
    cell: int
    tile_cells: tuple[int, int]
    origins: np.ndarray

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.origins)

    @property
    def map_shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the stitched map: the cells covered by any tile."""
        last = (self.origins.max(axis=0) - self.region[:2]) // self.cell
        return (int(last[0]) + self.tile_cells[0], int(last[1]) + self.tile_cells[1])

    def cell_offsets(self, indices: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(N, 2) map cell of the top-left of each tile."""
        return (self.origins[indices] - np.asarray(self.region[:2])) // self.cell

    def boxes(self, pixel_size: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
        """(N, 4) float boxes ``(y0, x0, y1, x1)`` of the tiles, in pixels of ``pixel_size``."""
        size = np.asarray(pixel_size, dtype=float)
        top_left = self.origins * size
        return np.hstack([top_left, top_left + np.asarray(self.tile) * size])


def grid_step(tile: int, cell: int, overlap: float) -> int:
    """Return the step between tiles: ``tile * (1 - overlap)`` down to a multiple of ``cell``.

    Examples
    --------
    >>> grid_step(96, 8, 0.5), grid_step(96, 8, 0.0), grid_step(96, 8, 0.99)
    (48, 96, 8)
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return max(cell, int(tile * (1.0 - overlap)) // cell * cell)


def axis_origins(start: int, stop: int, tile: int, step: int, cell: int) -> np.ndarray:
    """Tile starts along one axis: every ``step``, plus one flush with the end (on the cells).

    The last tile ends at most ``cell - 1`` pixels before ``stop``, so the map never reaches
    past the region.
    """
    if stop - start < tile:
        raise ValueError(
            f"the region is {stop - start} pixels across but a tile needs {tile}; choose a "
            "larger region, or explain it without tiles"
        )
    last = start + (stop - start - tile) // cell * cell
    return np.unique(np.append(np.arange(start, last + 1, step), last)).astype(np.int64)


def tile_grid(
    region: Sequence[int],
    tile: Sequence[int],
    cell: int,
    tile_cells: Sequence[int],
    overlap: float = 0.5,
) -> TileGrid:
    """Lay tiles over a region, in row-major order, with the given overlap, on the map's cell grid.

    Parameters
    ----------
    region : sequence of int
        ``(y0, x0, y1, x1)`` in sampled pixels.
    tile : sequence of int
        ``(height, width)`` of the model input.
    cell : int
        Sampled pixels per map cell (the stride of the explained layer).
    tile_cells : sequence of int
        ``(h, w)`` of one tile's map.
    overlap : float
        Fraction of a tile shared with its neighbour.
    """
    y0, x0, y1, x1 = (int(v) for v in region)
    th, tw = (int(v) for v in tile)
    if cell < 1 or th % cell or tw % cell:
        raise ValueError(
            f"tiles of {th} x {tw} pixels do not fall on a map grid of {cell}-pixel cells; "
            "use a tile size that is a multiple of the layer's stride"
        )
    step = (grid_step(th, cell, overlap), grid_step(tw, cell, overlap))
    rows = axis_origins(y0, y1, th, step[0], cell)
    cols = axis_origins(x0, x1, tw, step[1], cell)
    origins = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    cells = (int(tile_cells[0]), int(tile_cells[1]))
    return TileGrid((y0, x0, y1, x1), (th, tw), step, cell, cells, origins)


def tile_window(shape: Sequence[int], window: str = "hann") -> np.ndarray:
    """Per-cell blending weights of one tile map (positive everywhere).

    ``hann`` is ``sin(pi (i + 1/2) / n) ** 2`` per axis: shifted by half a tile it adds up to
    exactly one, so 50 % overlapping tiles cross-fade without a bump.
    """
    if window == "mean":
        return np.ones(tuple(shape), dtype=np.float32)
    if window != "hann":
        raise ValueError(f"unknown window {window!r}; use one of {WINDOWS}")
    axes = [np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2 for n in shape]
    return np.outer(axes[0], axes[1]).astype(np.float32)


class Stitcher:
    """Blend overlapping tile maps into one raw map: weighted sum / sum of weights per cell.

    Tiles must be added in the grid's row-major order (skipped tiles may be left out). Only a
    band of one tile's height of accumulators is held; rows no later tile can reach are
    written to ``out``, so memory does not grow with the region.

    Parameters
    ----------
    window : str
        One of :data:`WINDOWS`.
    out : array-like, optional
        Writable ``grid.map_shape`` float32 array (numpy, zarr); cells no tile covered stay 0.
        Default: a new numpy array.
    """

    def __init__(self, grid: TileGrid, window: str = "hann", out: Any = None) -> None:
        self.grid = grid
        self.out = np.zeros(grid.map_shape, np.float32) if out is None else out
        self.weights = tile_window(grid.tile_cells, window)
        band = (grid.tile_cells[0], grid.map_shape[1])
        self._sum = np.zeros(band, np.float64)
        self._weight = np.zeros(band, np.float64)
        self._top = 0
        self.flushed = 0
        self.maximum = 0.0
        """Largest value written to ``out`` so far (the map's maximum once finished)."""

    def add(self, indices: np.ndarray, cams: np.ndarray) -> tuple[int, int]:
        """Add the maps ``cams`` (N, h, w) of tiles ``indices``; return the rows they touched."""
        offsets = self.grid.cell_offsets(np.asarray(indices))
        h, w = self.grid.tile_cells
        if cams.shape[1:] != (h, w):
            raise ValueError(f"tile maps are {cams.shape[1:]}, the grid expects {(h, w)}")
        for (row, col), cam in zip(offsets, cams, strict=True):
            self._advance(int(row))
            band_row = row - self._top
            self._sum[band_row : band_row + h, col : col + w] += cam * self.weights
            self._weight[band_row : band_row + h, col : col + w] += self.weights
        first = int(offsets[:, 0].min()) if len(offsets) else self._top
        return (min(first, self._top), self._top + h)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Current values of map rows ``start:stop``: written rows, then the blended band."""
        stop = min(stop, self.grid.map_shape[0])
        done = np.asarray(self.out[start : min(stop, self.flushed)], dtype=np.float32)
        band = self._blend(max(start, self._top) - self._top, stop - self._top)
        return np.concatenate([done, band]) if len(band) else done

    def finish(self) -> Any:
        """Write every remaining row; return ``out``."""
        self._advance(self.grid.map_shape[0])
        return self.out

    def _blend(self, start: int, stop: int) -> np.ndarray:
        weight = self._weight[start:stop]
        mean = np.divide(self._sum[start:stop], weight, where=weight > 0, out=np.zeros_like(weight))
        return mean.astype(np.float32)

    def _advance(self, row: int) -> None:
        """Write rows above ``row`` (no later tile reaches them) and move the band down."""
        shift = min(row - self._top, len(self._sum))
        if shift <= 0:
            return
        stop = min(self._top + shift, self.grid.map_shape[0])
        values = self._blend(0, stop - self._top)
        self.out[self._top : stop] = values
        self.maximum = max(self.maximum, float(values.max(initial=0.0)))
        self._sum = np.roll(self._sum, -shift, axis=0)
        self._weight = np.roll(self._weight, -shift, axis=0)
        self._sum[-shift:] = 0.0
        self._weight[-shift:] = 0.0
        self.flushed = min(row, self.grid.map_shape[0])
        self._top = row
