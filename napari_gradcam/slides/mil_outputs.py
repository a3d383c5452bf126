"""What ``napari-gradcam slide --mil`` writes per slide, each file whole or not at all.

* ``<stem>.mil.<score>.zarr``: each tile score painted over its tile (overlapping tiles
  averaged), an OME-Zarr placed on the slide like the Grad-CAM heatmaps (``slides.outputs``);
* ``<stem>.mil.tiles.csv``: one row per tile with its level-0 box and every score;
* ``<stem>.mil.tiles.geojson``: the tiles as QuPath tile objects with the scores as measurements;
* ``<stem>.mil.json``: prediction, IG completeness and removal faithfulness;
* ``<stem>.mil.drill/<rank>_<for|against>_tile<i>.png``: drill-down maps of the top tiles.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.output_files import atomic_write, check_outputs, json_text, output_stem
from napari_gradcam.core.tiling.grid import TileGrid
from napari_gradcam.slides.embeddings import SlideEmbeddings
from napari_gradcam.slides.mil_scores import SIGNED
from napari_gradcam.slides.outputs import (
    SLIDE_NAME_SUFFIXES,
    HeatmapStore,
    heatmap_placement,
)

SCORE_NAMES = tuple(SIGNED)
MAX_REFINE = 8
"""Tiles flush with the slide's edge may make the map's cells at most this many times finer."""


@dataclass(frozen=True)
class MilOutputs:
    """The output paths of one slide's slide-model run."""

    folder: Path
    stem: str

    @classmethod
    def for_slide(cls, slide: str | Path, out: Path) -> MilOutputs:
        """Outputs named after the slide's file or folder name, less a slide suffix, in ``out``."""
        return cls(out, output_stem(Path(slide), SLIDE_NAME_SUFFIXES, "slide"))

    def heatmap(self, score: str) -> Path:
        """The zarr of one score."""
        return self.folder / f"{self.stem}.mil.{score}.zarr"

    @property
    def tiles(self) -> Path:
        """The per-tile CSV."""
        return self.folder / f"{self.stem}.mil.tiles.csv"

    @property
    def geojson(self) -> Path:
        """The QuPath tile objects."""
        return self.folder / f"{self.stem}.mil.tiles.geojson"

    @property
    def summary(self) -> Path:
        """The JSON summary."""
        return self.folder / f"{self.stem}.mil.json"

    @property
    def drill(self) -> Path:
        """The folder of drill-down PNGs."""
        return self.folder / f"{self.stem}.mil.drill"

    def paths(self) -> list[Path]:
        """Every output path."""
        scores = [self.heatmap(name) for name in SCORE_NAMES]
        return [*scores, self.tiles, self.geojson, self.summary, self.drill]


def plan_mil_outputs(slides: list[Path], out: Path, overwrite: bool) -> list[MilOutputs]:
    """Outputs per slide; refuse inputs as outputs, clashes and (unasked) overwrites."""
    plans = [MilOutputs.for_slide(slide, out) for slide in slides]
    check_outputs([plan.paths() for plan in plans], "slides", overwrite, slides)
    return plans


def score_map(
    tiles: SlideEmbeddings, values: np.ndarray, blur: float = 0.0
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Paint each tile's value over its tile; average where tiles overlap.

    Returns the map, its level-0 stride and origin. A map cell is :func:`map_cell` sampled
    pixels (a whole tile without overlap), so every tile covers whole cells. ``blur`` is a
    Gaussian's sigma in tiles (CLAM-style smoothing), normalised by the blurred coverage so the
    edges of the tissue do not fade.
    """
    grid = tiles.grid
    cell = map_cell(grid)
    span = (grid.tile[0] // cell, grid.tile[1] // cell)
    corners = np.rint((grid.origins - np.asarray(grid.region[:2])) / cell).astype(np.int64)
    shape = tuple(int(v) for v in corners.max(axis=0) + span)
    total = np.zeros(shape, np.float64)
    count = np.zeros(shape, np.float64)
    for (row, col), value in zip(corners, values, strict=True):
        total[row : row + span[0], col : col + span[1]] += value
        count[row : row + span[0], col : col + span[1]] += 1
    if blur > 0:
        from scipy.ndimage import gaussian_filter

        sigma = (blur * span[0], blur * span[1])
        covered = count > 0
        total = gaussian_filter(total, sigma) * covered
        count = gaussian_filter(count, sigma) * covered
    painted = np.divide(total, count, out=np.zeros(shape), where=count > 0).astype(np.float32)
    py, px = tiles.pixel_size
    stride = (cell * py, cell * px)
    origin = (grid.region[0] * py, grid.region[1] * px)
    return painted, stride, origin


def map_cell(grid: TileGrid) -> int:
    """Sampled pixels per map cell: the largest that every tile's corner and size fall on.

    That is ``gcd(tile, step)`` unless a tile lies flush with the slide's edge off the step;
    then the cell shrinks so that tile is placed exactly, down to 1/:data:`MAX_REFINE` of
    ``gcd(tile, step)``. Finer than that (a map many times larger) the flush tile is rounded
    to the nearest coarse cell.
    """
    coarse = math.gcd(math.gcd(*grid.tile), math.gcd(*grid.step))
    offsets = np.unique(grid.origins - np.asarray(grid.region[:2]))
    exact = math.gcd(coarse, *(int(v) for v in offsets))
    return exact if exact * MAX_REFINE >= coarse else coarse


def write_score_zarr(
    path: Path, painted: np.ndarray, attrs: dict[str, Any], overwrite: bool
) -> None:
    """Write one painted score map as a placed OME-Zarr (temporary folder renamed into place)."""
    store = HeatmapStore(path, painted.shape)
    try:
        store.level0[:] = painted
        store.publish(attrs, overwrite)
    except BaseException:
        store.discard()
        raise


def score_attrs(
    facts: dict[str, Any], score: str, painted: np.ndarray, geometry: tuple[Any, Any]
) -> dict[str, Any]:
    """Placement and provenance of one score map; signed scores get symmetric limits."""
    stride, origin = geometry
    peak = float(np.abs(painted).max()) or 1.0
    limits = [-peak, peak] if SIGNED[score] else [0.0, peak]
    return {
        **facts,
        "kind": "heatmap",
        "method": f"mil {score}",
        "signed": SIGNED[score],
        "stride": list(stride),
        "origin": list(origin),
        "shape": list(painted.shape),
        "placement": heatmap_placement(stride, origin, facts.get("mpp")),
        "contrast_limits": limits,
        "normalisation": "raw tile scores; signed ones centred on zero",
    }


def write_tile_csv(path: Path, tiles: SlideEmbeddings, columns: dict[str, np.ndarray]) -> None:
    """One row per tile: index, level-0 box, tissue share and every score column."""
    boxes = tiles.boxes

    def write(temporary: Path) -> None:
        with temporary.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["tile", "y0", "x0", "y1", "x1", "tissue_fraction", *columns])
            for i, box in enumerate(boxes):
                values = [f"{float(v[i]):.6g}" for v in columns.values()]
                writer.writerow([i, *(f"{b:.1f}" for b in box), f"{tiles.tissue[i]:.3f}", *values])

    atomic_write(path, write)


def write_tile_geojson(path: Path, tiles: SlideEmbeddings, columns: dict[str, np.ndarray]) -> None:
    """The tiles as QuPath tile objects (level-0 pixel polygons) with the scores as measurements.

    A small writer of its own: the shared QuPath tile export (branch ``geojson``) was not
    merged when this was written.
    """
    features = []
    for i, (y0, x0, y1, x1) in enumerate(tiles.boxes.tolist()):
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        measurements = {name: float(values[i]) for name, values in columns.items()}
        features.append(
            {
                "type": "Feature",
                "id": f"tile-{i}",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "tile",
                    "name": f"tile {i}",
                    "measurements": measurements,
                },
            }
        )
    text = json_text({"type": "FeatureCollection", "features": features})
    atomic_write(path, lambda temporary: temporary.write_text(text))
