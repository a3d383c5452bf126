"""The tiled part of the Grad-CAM dock: options, live heatmaps, the tiles layer and table.

The widget hands over each tiled update and outcome; this keeps the tissue found per image,
fills the heatmaps in, and after a run shows the tiles as points and in a sortable table
whose rows jump the camera to their tile, and exports them as QuPath tile objects.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, PushButton
from napari.layers import Image, Labels, Points
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QFileDialog

from napari_gradcam._napari.explain.tile_table import TileTable
from napari_gradcam._napari.explain.tiled_job import TiledResult, TilingOptions
from napari_gradcam._napari.explain.tiled_layers import (
    LiveHeatmaps,
    tile_features,
    tiles_layer,
    tissue_layer,
)

if TYPE_CHECKING:
    from napari.viewer import Viewer

    from napari_gradcam._napari.explain.job import ExplainJob, JobOutcome
    from napari_gradcam._napari.explain.tiled_job import TiledUpdate
    from napari_gradcam._napari.plane import Plane
    from napari_gradcam.core.tiling.slide_tissue import TissueMap

TILED_TIP = (
    "explain regions larger than the model input tile by tile (stitched into one map); "
    "unticked, the whole region is shrunk to one model input"
)
TISSUE_TIP = "find the tissue once per image and skip tiles that are mostly glass"
OVERLAP_TIP = "share of a tile that overlaps its neighbours (more: smoother map, more tiles)"
HELPERS_TIP = (
    "after a tiled run, also show the tissue found and a point at each tile's centre, "
    "coloured by the tile's class (hidden by default: they cover the map)"
)
ZOOM_TILES = 4
"""A jump to a tile zooms so that the canvas shows about this many tiles across."""
EXPORT_TIP = "save the tiles as QuPath tile objects with their numbers as measurements"


class TiledReview:
    """Tiling options, live heatmaps and the per-tile review of one dock widget."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.tiled = CheckBox(text="tile large regions", value=True, tooltip=TILED_TIP)
        self.skip_glass = CheckBox(text="skip background tiles", value=True, tooltip=TISSUE_TIP)
        self.overlap = FloatSpinBox(
            label="tile overlap", value=0.5, min=0.0, max=0.9, step=0.25, tooltip=OVERLAP_TIP
        )
        self.show_helpers = CheckBox(text="show tiles and tissue", value=False, tooltip=HELPERS_TIP)
        self.show_helpers.changed.connect(self._on_show_helpers)
        self.helpers: list[Points | Labels] = []
        self.table = TileTable(self.jump_to)
        self.table.setVisible(False)
        self.export = PushButton(text="Export tiles to QuPath…", visible=False, tooltip=EXPORT_TIP)
        self.export.changed.connect(self._ask_export)
        self.live: LiveHeatmaps | None = None
        self.features: dict[str, np.ndarray] = {}
        self.points: Points | None = None
        self.image: Image | None = None
        self._tissue: weakref.WeakKeyDictionary[Image, tuple] = weakref.WeakKeyDictionary()
        self._paces: dict[tuple[str, str], float] = {}

    @property
    def controls(self) -> list:
        """The advanced option widgets, for the dock's folded section."""
        return [self.skip_glass, self.overlap]

    def options(self, spec: str, method: str) -> TilingOptions | None:
        """The tiling options of the next job (None: no tiling).

        They carry the pace of the last run of ``spec`` and ``method``, for the estimate
        shown before the next one starts.
        """
        if not self.tiled.value:
            return None
        return TilingOptions(
            overlap=self.overlap.value,
            tissue=self.skip_glass.value,
            pace=self._paces.get((spec, method)),
        )

    def cached_tissue(self, image: Image, plane: Plane) -> TissueMap | None:
        """The tissue found earlier for this image and slice, if any."""
        key, tissue = self._tissue.get(image, (None, None))
        return tissue if key == (plane.slice_index, plane.shape) else None

    def start(self, job: ExplainJob, image: Image, on_added: Callable[[Image], None]) -> None:
        """Get ready for the updates of a new job on ``image``; ``on_added`` gets each new map."""
        self.live = LiveHeatmaps(self.viewer, image, job, on_added)
        self.image = image

    def apply(self, update: TiledUpdate) -> bool:
        """Show one update; False when its heatmap was closed (the job should stop)."""
        return self.live is None or self.live.apply(update)

    def discard(self) -> None:
        """Remove the half-filled heatmaps of a cancelled or failed job."""
        if self.live is not None:
            self.live.discard()
        self.live = None

    def finish(self, outcome: JobOutcome, job: ExplainJob) -> list[int]:
        """Complete the tiled heatmaps and show the tiles; return the results' indices.

        The widget adds layers for the results whose indices are not returned.
        """
        if outcome.tissue is not None and self.image is not None and job.plane is not None:
            self._tissue[self.image] = ((job.plane.slice_index, job.plane.shape), outcome.tissue)
        tiled = [i for i, r in enumerate(outcome.results) if isinstance(r, TiledResult)]
        if self.live is None or not tiled:
            return tiled
        for index in tiled:
            result = outcome.results[index]
            self.live.finish(index, result, outcome.tissue)
            if result.pace is not None:
                self._paces[(job.spec, result.settings.method)] = result.pace
        self.show_tiles([outcome.results[i] for i in tiled], self.live.image)
        self.live = None
        return tiled

    def show_tiles(self, results: list[TiledResult], image: Image) -> None:
        """Fill the table; add the tiles and tissue layers when "show tiles and tissue" is on."""
        self.features = tile_features(results)
        self.image = image
        self._hide_helpers()
        self.helpers, self.points = [], None
        if self.show_helpers.value:
            self._add_helpers()
        self.table.set_columns({k: v for k, v in self.features.items() if k != "box"})
        self.table.setVisible(True)
        self.export.visible = True

    def _on_show_helpers(self, show: bool) -> None:
        """Show the last run's helper layers (made now if needed), or hide them."""
        if not show:
            self._hide_helpers()
        elif any(layer in self.viewer.layers for layer in self.helpers):
            for layer in self.helpers:
                layer.visible = True
        else:
            self._add_helpers()

    def _hide_helpers(self) -> None:
        for layer in self.helpers:
            layer.visible = False

    def _add_helpers(self) -> None:
        """Add the last run's tissue and tile-centre layers, above the newest map."""
        image = self.image
        if image is None or image not in self.viewer.layers or not self.features:
            return
        _key, tissue = self._tissue.get(image, (None, None))
        self.helpers = [tissue_layer(tissue, image)] if tissue is not None else []
        self.points = tiles_layer(self.features, image)
        self.helpers.append(self.points)
        selected = self.viewer.layers.selection.active
        for layer in self.helpers:
            self.viewer.add_layer(layer)
        if selected is not None and selected in self.viewer.layers:
            self.viewer.layers.selection.active = selected

    def export_tiles(self, path: str | Path, *, overwrite: bool = False) -> FunctionWorker | None:
        """Write the tiles of the last run as QuPath GeoJSON, in level-0 pixels of the image.

        The file is written in a worker thread (tens of thousands of tiles take seconds);
        a notification says when it is done or why not. Return the started worker (it
        returns the path), or None when there are no tiles.
        """
        from napari_gradcam.core.regions.qupath_tiles import write_tiles_geojson

        if not self.features or not len(self.features["box"]):
            show_warning("no tiles to export: explain a region tile by tile first")
            return None
        count = len(self.features["box"])
        columns = {name: values for name, values in self.features.items() if name != "box"}
        self.export.enabled = False
        return create_worker(
            write_tiles_geojson,
            path,
            self.features["box"],
            columns,
            overwrite=overwrite,
            _connect={
                "returned": lambda written: show_info(f"wrote {count} tiles to {written.name}"),
                "errored": lambda err: show_warning(f"tiles not exported: {err}"),
                "finished": lambda: setattr(self.export, "enabled", True),
            },
        )

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            None, "Export tiles to QuPath", "", "GeoJSON (*.geojson)"
        )
        if path:  # the dialog has confirmed replacing an existing file
            self.export_tiles(path, overwrite=True)

    def jump_to(self, row: int) -> None:
        """Centre the camera on tile ``row`` (zoomed to a few tiles) and select its point."""
        if self.image is None or self.image not in self.viewer.layers:
            return
        jump_to_box(self.viewer, self.image, self.features["box"][row])
        if self.points is not None and self.points in self.viewer.layers:
            self.points.selected_data = {row}


def jump_to_box(viewer: Viewer, image: Image, box: Sequence[float]) -> None:
    """Centre the camera on a level-0 box ``(y0, x0, y1, x1)`` of ``image``, a few boxes wide."""
    y0, x0, y1, x1 = np.asarray(box, dtype=float)
    corners = np.array([[y0 - 0.5, x0 - 0.5], [y1 - 0.5, x1 - 0.5]])
    world = np.array([to_world(image, corner) for corner in corners])
    viewer.scene.camera.center = tuple(world.mean(axis=0))
    span = float(np.abs(world[1] - world[0]).max())
    viewer.scene.camera.zoom = min(viewer.canvas.size) / (ZOOM_TILES * span)


def to_world(image: Image, yx: Sequence[float]) -> np.ndarray:
    """World ``(y, x)`` of a level-0 data point ``yx`` of ``image``'s plane."""
    point = np.zeros(image.ndim)
    point[-2:] = yx
    return np.asarray(image.data_to_world(point))[-2:]
