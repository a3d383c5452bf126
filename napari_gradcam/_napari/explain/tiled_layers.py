"""napari layers of tiled explanations: the heatmap that fills in, the tissue, the tiles.

Everything here runs on the main thread (from the worker's ``yielded``/``returned`` signals).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels, Points
from napari.utils.colormaps import Colormap, ensure_colormap

from napari_gradcam._napari.heatmap_style import (
    DEFAULT_OPACITY,
    DISPLAY_RANGE,
    GLASS_CLEARED,
    clear_glass,
    heatmap_colormap,
    show_colorbar_soon,
    to_display,
)
from napari_gradcam._napari.records import (
    PER_TILE,
    HeatmapRecord,
    TileCounts,
    filling_in_metadata,
)
from napari_gradcam._napari.result_layers import EACH_TILE, heatmap_name, placement_kwargs
from napari_gradcam._napari.target_words import names_a_class, score_name, target_in_words
from napari_gradcam.core.targets import Target

if TYPE_CHECKING:
    from napari.viewer import Viewer

    from napari_gradcam._napari.explain.job import ExplainJob
    from napari_gradcam._napari.explain.tiled_job import TiledMapGeometry, TiledResult, TiledUpdate
    from napari_gradcam.core.tiling.slide_tissue import TissueMap

TILE_COLUMNS = (
    "tile",
    "class",
    "probability",
    "margin",
    "tissue",
    "entropy",
    "energy",
    "roughness",
)
"""Features of the tiles layer (and columns of the tile table); ``tissue`` is the tile's
tissue fraction, the last three are noise indicators (``core.tile_stats``)."""


TILE_SOURCES = {"tissue": "tissue_fraction", "similarity": "score"}
"""The per-tile fact behind a column, where their names differ."""

CLEAR_ZERO = 1e-4
"""Share of the colour range at the bottom that fades to transparent (zero: no tile)."""


def clear_low(name: str) -> Colormap:
    """The colormap ``name``, transparent at the bottom of its range (zero: no tile)."""
    base = ensure_colormap(name)
    colors = np.vstack([[0.0, 0.0, 0.0, 0.0], base.colors])
    controls = np.concatenate([[0.0], CLEAR_ZERO + (1 - CLEAR_ZERO) * base.controls])
    return Colormap(colors, controls=controls, name=f"{name} (clear zero)")


class LiveHeatmaps:
    """Heatmap layers of the tiled regions of one job, filled in as batches arrive.

    ``on_added`` is called with each heatmap layer as it is added (the dock hides the earlier
    maps); ``image`` gives the layers' names and placement.
    """

    def __init__(
        self, viewer: Viewer, image: Image, job: ExplainJob, on_added: Callable[[Image], None]
    ) -> None:
        self.viewer = viewer
        self.image = image
        self.job = job
        self.on_added = on_added
        self.layers: dict[int, Image] = {}
        self.maxima: dict[int, float] = {}

    def apply(self, update: TiledUpdate) -> bool:
        """Show an update; return False when its heatmap layer was closed meanwhile."""
        layer = self.layers.get(update.region)
        if layer is None:
            layer = self._add(update.region, update.geometry)
        elif layer not in self.viewer.layers:
            return False
        if update.rows.size:
            stop = update.first_row + len(update.rows)
            layer.data[update.first_row : stop] = update.rows
            high = max(self.maxima.get(update.region, 0.0), float(update.rows.max()))
            self.maxima[update.region] = high
            layer.contrast_limits = (0.0, high if high > 0 else 1.0)
            layer.refresh()
        return True

    def finish(
        self, region: int, result: TiledResult, tissue: TissueMap | None = None
    ) -> Image | None:
        """Give a region's layer its final map and metadata; None if it was closed.

        With the image's ``tissue``, cells on glass are cleared (see ``clear_glass``).
        """
        layer = self.layers.get(region)
        if layer is None or layer not in self.viewer.layers:
            return None
        placed = result.placed
        shown, raw = to_display(placed.cam)
        if tissue is not None:
            shown = clear_glass(shown, placed.stride, placed.origin, tissue)
        layer.data = shown
        layer.contrast_limits = (0.0, 1.0)
        layer.metadata.clear()
        record = tiled_record(result, self.image, self.job, raw, glass=tissue is not None)
        layer.metadata.update(record.to_metadata())
        show_colorbar_soon(layer)
        return layer

    def discard(self) -> None:
        """Remove every layer this job added (after a cancel or an error)."""
        for layer in self.layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers.clear()

    def _add(self, region: int, geometry: TiledMapGeometry) -> Image:
        box = self.job.boxes[region]
        layer = Image(
            np.zeros(geometry.shape, np.float32),
            name=heatmap_name(self.job, asked_text(self.job.asked), box),
            colormap=heatmap_colormap(),
            opacity=DEFAULT_OPACITY,
            blending="translucent",
            contrast_limits=(0.0, 1.0),
            interpolation2d="linear",
            metadata=filling_in_metadata(),
            **placement_kwargs(self.image, geometry.stride, geometry.origin),
        )
        self.viewer.add_layer(layer)
        self.layers[region] = layer
        self.on_added(layer)
        return layer


def tiled_record(
    result: TiledResult,
    image: Image,
    job: ExplainJob,
    raw: tuple[float, float],
    glass: bool = False,
) -> HeatmapRecord:
    """The record of a tiled region's stitched heatmap over ``image``.

    The layer shows the map as 0-1 of its raw ``(min, max)``, ``raw``; ``glass``: cells off
    the tissue were cleared.
    """
    normalisation = f"one for the whole region: {DISPLAY_RANGE}"
    if glass:
        normalisation = f"{normalisation}; {GLASS_CLEARED}"
    geometry, settings, placed = result.geometry, result.settings, result.placed
    target = settings.target
    if names_a_class(target) and target is not None:
        target = str(target)
    return HeatmapRecord(
        spec=job.spec,
        weights=job.weights,
        settings=settings.replace(target=target),
        target_name=PER_TILE if target is None else target_in_words(target, result.class_names),
        stride=placed.stride,
        origin=placed.origin,
        image_layer=image.name,
        box=result.box,
        slice_index=job.plane.slice_index if job.plane else (),
        level=geometry.level,
        tiles=TileCounts(
            geometry.n_tiles,
            geometry.n_explained,
            job.tiling.overlap if job.tiling else 0.0,
            geometry.tile,
        ),
        normalisation=normalisation,
        raw_range=raw,
    )


def asked_text(target: Target) -> str:
    """A tiled map's target in its layer name: described, or "each tile's class"."""
    return EACH_TILE if target is None else target_in_words(target)


def tissue_layer(tissue: TissueMap, image: Image) -> Labels:
    """The tissue mask as a Labels layer over the image."""
    return Labels(
        tissue.mask.astype(np.uint8),
        name=f"{image.name} tissue",
        opacity=0.3,
        **placement_kwargs(image, tissue.pixel_size, (0.0, 0.0)),
    )


def tile_columns(target: Target) -> tuple[str, ...]:
    """The tile table's columns for a map of ``target``.

    A prompt's or region's map has no class per tile: its tiles show their similarity (or
    score) to the target instead of a class and its probability.
    """
    if names_a_class(target):
        return TILE_COLUMNS
    return ("tile", score_name(target), *TILE_COLUMNS[4:])


def tile_features(results: list[TiledResult]) -> dict[str, np.ndarray]:
    """One row per explained tile of ``results``: :func:`tile_columns` plus ``box``."""
    target = results[0].settings.target if results else None
    names_shown = tile_columns(target)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in (*names_shown, "box")}
    for result in results:
        tiles = result.tiles
        columns["tile"].append(tiles["index"])
        columns["box"].append(tiles["box"])
        if "class" in columns:
            names = np.asarray(result.class_names, dtype=object)
            columns["class"].append(names[np.asarray(tiles["class_index"], dtype=int)])
        for name in names_shown:
            if name not in ("tile", "class"):
                source = TILE_SOURCES.get(name, name)
                columns[name].append(np.asarray(tiles[source], dtype=np.float32))
    return {
        name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()
    }


def tiles_layer(features: dict[str, np.ndarray], image: Image) -> Points:
    """A Points layer at the tile centres, coloured by class, with the per-tile features."""
    boxes = np.asarray(features["box"], dtype=float).reshape(-1, 4)
    centres = (boxes[:, :2] + boxes[:, 2:] - 1.0) / 2.0
    side = float(np.median(boxes[:, 2] - boxes[:, 0])) if len(boxes) else 1.0
    table = {name: values for name, values in features.items() if name != "box"}
    colour = "class" if "class" in table else list(table)[1]
    return Points(
        centres,
        name=f"{image.name} tiles",
        features=table,
        face_color=colour if len(boxes) else "white",
        border_color="white",
        border_width=0.15,
        size=max(side / 10.0, 1.0),
        opacity=0.8,
        scale=tuple(image.scale[-2:]),
        translate=tuple(image.translate[-2:]),
        units=tuple(image.units[-2:]),
    )
