"""The tiled branch of the Explain job: a region larger than the model input, tile by tile.

Runs in the widget's worker thread and never touches the viewer. It drives the tiled run the
slide command drives too (``core.tiling.loop.explain_tiled``), yields its steps with the box
named and a :class:`TiledUpdate` per batch (the map rows that changed, copied), and returns a
:class:`TiledResult`; the widget applies both on the main thread. torch is imported only when
the job runs.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gradcam._napari.plane import Plane
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.target_words import names_a_class, score_name, target_in_words
from napari_gradcam.core.progress import Progress, relay
from napari_gradcam.core.regions.region_stats import PlacedMap
from napari_gradcam.core.tiling.grid import MIN_TISSUE

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.core.settings import ExplainSettings
    from napari_gradcam.core.tiling.loop import TileBatch
    from napari_gradcam.core.tiling.slide_tissue import TissueMap
    from napari_gradcam.core.tiling.tiled import TilePlan


@dataclass(frozen=True)
class TilingOptions:
    """How regions larger than the model input are tiled.

    ``pace``: seconds per tile measured by an earlier run of the same model and method, for
    the estimate shown before the first batch (``None``: not known yet).
    """

    overlap: float = 0.5
    tissue: bool = True
    min_tissue: float = MIN_TISSUE
    batch_size: int = 32
    pace: float | None = None


@dataclass(frozen=True)
class TiledMapGeometry:
    """Where a tiled region's map lies: level-0 stride and origin, and its size."""

    shape: tuple[int, int]
    stride: tuple[float, float]
    origin: tuple[float, float]
    level: int
    n_tiles: int
    n_explained: int
    tile: tuple[float, float] = (0.0, 0.0)
    """Size of one tile in level-0 pixels."""


@dataclass(frozen=True)
class TiledUpdate:
    """Progress of one tiled region (``region``: its box's index in the job).

    ``rows`` are a copy of the map rows the last batch changed, from ``first_row`` on.
    """

    region: int
    geometry: TiledMapGeometry
    first_row: int = 0
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


@dataclass(frozen=True)
class TiledResult:
    """A tiled region's stitched raw map and its tiles.

    Attributes
    ----------
    cam : numpy.ndarray
        Stitched raw map (one normalisation for the whole region is left to the display).
    settings : ExplainSettings
        Method, resolved layer and target.
    tiles : dict of str to numpy.ndarray
        Explained tiles: ``index``, ``box`` (N, 4, level-0 pixels), ``tissue_fraction`` and
        the per-tile facts (``core.tile_stats.FACTS``).
    seconds : float
        Time spent explaining the tiles (the pace of the next estimate).
    """

    box: Box
    cam: np.ndarray
    geometry: TiledMapGeometry
    settings: ExplainSettings
    tiles: dict[str, np.ndarray]
    class_names: tuple[str, ...]
    seconds: float = 0.0

    @property
    def pace(self) -> float | None:
        """Seconds per explained tile, or ``None`` when none was explained."""
        explained = self.geometry.n_explained
        return self.seconds / explained if explained else None

    @property
    def stride(self) -> tuple[float, float]:
        """Level-0 pixels per map cell."""
        return self.geometry.stride

    @property
    def origin(self) -> tuple[float, float]:
        """Level-0 pixel of the map's top-left corner."""
        return self.geometry.origin

    @property
    def placed(self) -> PlacedMap:
        """The stitched map where it lies: level-0 pixels per cell and of its first corner."""
        return PlacedMap(np.asarray(self.cam, np.float32), self.stride, self.origin)

    @property
    def label(self) -> str:
        """``"<n> tiles (<map>), <share> <top class>"`` for the result line.

        A prompt's or region's map gives its tiles' range instead, e.g. ``"similarity 0.12
        to 0.45"``.
        """
        classes = np.asarray(self.tiles["class_index"], dtype=int)
        if classes.size == 0:
            return "no tissue tiles"
        target = self.settings.target
        shown = "each tile's class" if target is None else target_in_words(target, self.class_names)
        if not names_a_class(target):
            scores = np.asarray(self.tiles["score"], dtype=float)
            low, high = np.nanmin(scores), np.nanmax(scores)
            return f"{classes.size} tiles ({shown}), {score_name(target)} {low:.2f} to {high:.2f}"
        top = int(np.bincount(classes).argmax())
        share = float(np.mean(classes == top))
        return f"{classes.size} tiles ({shown}), {share:.0%} {self.class_names[top]}"


def plan_region(
    loaded: LoadedModel,
    plane: Plane,
    box: Box,
    settings: ExplainSettings,
    options: TilingOptions,
    tissue: TissueMap | None,
) -> TilePlan | None:
    """Plan the tiles of ``box``, or return ``None`` when it fits in one model input."""
    from napari_gradcam.core.tiling.tiled import level_view, plan_tiles

    level, view = level_view(plane, loaded.card.mpp)
    y0, x0, y1, x1 = view.region_from_level0((box.y0, box.x0, box.y1, box.x1))
    tile = loaded.card.input_size or (224, 224)
    if y1 - y0 < tile[0] or x1 - x0 < tile[1] or (y1 - y0, x1 - x0) == tuple(tile):
        return None
    return plan_tiles(
        loaded,
        view,
        level,
        (box.y0, box.x0, box.y1, box.x1),
        tissue=tissue,
        overlap=options.overlap,
        min_tissue=options.min_tissue,
        settings=settings,
    )


def find_tissue(plane: Plane) -> TissueMap | None:
    """The plane's tissue (found on a low level), or ``None`` when the image is not RGB."""
    from napari_gradcam.core.tiling.slide_tissue import slide_tissue

    shape = plane.levels[0].shape
    if len(shape) != 3 or shape[-1] not in (3, 4):
        return None
    return slide_tissue(plane.levels, plane.downsamples)


def run_tiles(
    loaded: LoadedModel,
    plan: TilePlan,
    box: Box,
    region: int,
    options: TilingOptions,
) -> Generator[Progress | TiledUpdate, None, TiledResult]:
    """Explain ``plan``'s tiles of ``box`` (``region`` in the job) batch by batch.

    Each batch yields the changed map rows; ``options`` give the batch size and an earlier
    run's pace for the first estimate.
    """
    from napari_gradcam.core.explain.preprocess import pixel_range
    from napari_gradcam.core.tiling.loop import explain_tiled

    geometry = _geometry(plan)
    value_range = pixel_range(plan.view.data.dtype, _range_sample(plan))
    method = _method_title(plan.settings.method)
    yield Progress(0, len(plan.explained), start_message(box, geometry, method, options.pace))
    yield TiledUpdate(region, geometry)
    batches = []

    def update(event: Progress | TileBatch) -> Progress | TiledUpdate:
        if isinstance(event, Progress):
            return Progress(event.step, event.total, f"{box.label}: {event.message}")
        batches.append(event.results.facts)
        return TiledUpdate(region, geometry, event.first_row, event.rows)

    run = explain_tiled(loaded, plan, value_range, batch_size=options.batch_size, watch_rows=True)
    stitched = yield from relay(run, update)
    table = _tile_table(plan, batches)
    names = tuple(loaded.card.class_name(i) for i in range(_n_classes(table)))
    return TiledResult(box, stitched.cam, geometry, plan.settings, table, names, stitched.seconds)


def start_message(box: Box, geometry: TiledMapGeometry, method: str, pace: float | None) -> str:
    """What the run will take, said before its first batch.

    E.g. ``"about 4 min: 120 tiles x Score-CAM"``, from an earlier run's pace; without one,
    the first batch times it.
    """
    work = f"{geometry.n_explained} tiles x {method}"
    skipped = geometry.n_tiles - geometry.n_explained
    from napari_gradcam.core.tiling.loop import duration

    estimate = f"{duration(pace * geometry.n_explained)}: " if pace is not None else ""
    timing = "" if pace is not None else " (timing the first batch)"
    return f"{box.label}: {estimate}{work}{timing}, {skipped} background tiles skipped"


def _method_title(name: str) -> str:
    from napari_gradcam.core.explain.methods import METHODS

    return METHODS[name].title if name in METHODS else name


def _n_classes(table: dict[str, np.ndarray]) -> int:
    indices = np.concatenate([table["class_index"], table["target_index"]]).astype(int)
    return int(indices.max()) + 1 if indices.size else 0


def _geometry(plan: TilePlan) -> TiledMapGeometry:
    return TiledMapGeometry(
        plan.grid.map_shape,
        plan.stride,
        plan.origin,
        plan.level,
        plan.grid.n_tiles,
        len(plan.explained),
        tuple(c * s for c, s in zip(plan.grid.tile_cells, plan.stride, strict=True)),
    )


def _range_sample(plan: TilePlan) -> Any:
    """Pixels that fix the value range of a float image (its coarsest level is enough)."""
    from napari_gradcam.core.tiling.grid import as_numpy

    data = plan.view.data
    if np.issubdtype(data.dtype, np.integer):
        return None
    step = max(1, max(data.shape[:2]) // 1024)
    return as_numpy(data[::step, ::step])


def _tile_table(plan: TilePlan, batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Columns of the explained tiles, in grid order."""
    from napari_gradcam.core.tiling.tile_stats import FACTS

    indices = plan.explained
    table = {
        "index": indices,
        "box": plan.boxes()[indices],
        "tissue_fraction": plan.tissue[indices],
    }
    for name in FACTS:
        parts = [batch[name] for batch in batches]
        table[name] = np.concatenate(parts) if parts else np.zeros(0)
    return table
