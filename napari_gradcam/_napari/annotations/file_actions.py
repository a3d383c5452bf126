"""File buttons of the annotations dock: CSV, GeoJSON in and out, report figure, review sessions.

Each action has a method taking a path (what tests and scripts call) and a button that asks
for the path first. Save dialogs confirm replacing a file; saving a review into a folder that
holds one asks before replacing it. Errors are shown in the dock, never raised into Qt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from magicgui.widgets import Container, PushButton
from napari.layers import Image, Layer, Points, Shapes
from qtpy.QtWidgets import QFileDialog, QMessageBox

from napari_gradcam._napari.annotations.geojson_io import (
    ANNOTATION_KEY,
    FEATURE_COLUMNS,
    ensure_features,
    image_shape,
    reference_image,
    result_layers,
    write_annotations,
)
from napari_gradcam._napari.annotations.session_io import open_review, save_review
from napari_gradcam._napari.annotations.shape_coords import data_to_pixels, shape_polygons
from napari_gradcam._napari.jobs import JobHooks, JobRunner
from napari_gradcam._napari.plane import current_plane
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam.core.output_files import atomic_write
from napari_gradcam.core.regions.geojson import ReadResult, read_geojson
from napari_gradcam.core.regions.region_stats import PixelBox, expand_box, pixel_box
from napari_gradcam.review.figures import HeatmapFacts, Outline, region_figure, save_figure

if TYPE_CHECKING:
    from magicgui.widgets import ComboBox, Label
    from napari.viewer import Viewer

    from napari_gradcam._napari.annotations.geojson_io import LayerDataTuple
    from napari_gradcam._napari.annotations.labels import LabelSet


class AnnotationDock(Protocol):
    """What the file buttons use of the annotations dock (``widget.AnnotationWidget``)."""

    viewer: Viewer
    shapes: Shapes | None
    heatmap: ComboBox
    annotations: ComboBox
    labels: LabelSet
    status: Label

    def image_for(self, heatmap: Image | None = None) -> Image | None:
        """The image of a heatmap, else of the annotations."""

    def warn(self, message: str) -> None:
        """Show a warning in the dock."""


BUTTON_TIPS = {
    "Export CSV…": "one row per annotation: label, note and statistics, for a spreadsheet",
    "Export GeoJSON…": "the annotations as a QuPath GeoJSON file (File > Import objects)",
    "Import GeoJSON…": "annotations from QuPath (File > Export objects as GeoJSON)",
    "Export figure…": "a PNG of the selected annotations (else the heatmap's region) with "
    "tissue, heatmap, outlines and a colour bar",
    "Save review…": "image reference, heatmaps and annotations into a folder, to reopen later",
    "Open review…": "reopen a review saved with 'Save review…'",
}
FIGURE_MARGIN = 0.5
"""Extra context around a selected annotation in a figure, as a share of its size."""
MIN_FIGURE_PIXELS = 128


def _read_file(path: str | Path, shape: tuple[int, int] | None) -> ReadResult | str:
    """Read a GeoJSON file (in a worker): its objects, or what is wrong with it."""
    try:
        return read_geojson(path, image_shape=shape)
    except (OSError, ValueError) as err:
        return str(err)


def _build_layers(read: list[LayerDataTuple]) -> list[Layer]:
    """Make the layers of a read file (in a worker: triangulating many shapes takes a while).

    Only their models are made here; napari draws them once added on the main thread.
    """
    return [Layer.create(*item) for item in read]


def ask_save_path(caption: str, file_filter: str) -> Path | None:
    """Ask for a file to write (Qt confirms replacing an existing one)."""
    path, _ = QFileDialog.getSaveFileName(None, caption, "", file_filter)
    return Path(path) if path else None


def ask_open_path(caption: str, file_filter: str) -> Path | None:
    """Ask for a file to read."""
    path, _ = QFileDialog.getOpenFileName(None, caption, "", file_filter)
    return Path(path) if path else None


def ask_folder(caption: str) -> Path | None:
    """Ask for a folder."""
    path = QFileDialog.getExistingDirectory(None, caption)
    return Path(path) if path else None


def confirm(question: str) -> bool:
    """Ask a yes/no question; No is the default."""
    buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
    answer = QMessageBox.question(
        None, "napari-gradcam", question, buttons, QMessageBox.StandardButton.No
    )
    return answer == QMessageBox.StandardButton.Yes


class FileActions(Container):
    """Buttons that save and load what the annotations ``dock`` shows."""

    def __init__(self, dock: AnnotationDock) -> None:
        super().__init__(labels=False)
        self._dock = dock
        self._reads = JobRunner()
        self._builds = JobRunner()
        buttons = {
            "Export CSV…": lambda: self._ask(self.export_csv, "CSV (*.csv)"),
            "Export GeoJSON…": lambda: self._ask(self.export_geojson, "GeoJSON (*.geojson)"),
            "Import GeoJSON…": self._ask_import,
            "Export figure…": lambda: self._ask(self.export_figure, "PNG (*.png)"),
            "Save review…": self._ask_save_review,
            "Open review…": self._ask_open_review,
        }
        rows = [Container(layout="horizontal", labels=False) for _ in range(2)]
        for index, (text, action) in enumerate(buttons.items()):
            button = PushButton(text=text, tooltip=BUTTON_TIPS[text])
            button.changed.connect(action)
            rows[index // 3].append(button)
        self.extend(rows)

    def _ask(self, action, file_filter: str) -> None:
        path = ask_save_path("Save as", file_filter)
        if path is not None:
            action(path, overwrite=True)

    def _ask_import(self) -> None:
        path = ask_open_path("Import QuPath GeoJSON", "GeoJSON (*.geojson *.json)")
        if path is not None:
            self.import_geojson(path)

    def _ask_save_review(self) -> None:
        folder = ask_folder("Save the review in folder")
        if folder is None:
            return
        replace = (folder / "session.json").exists()
        if replace and not confirm(f"{folder} already holds a review. Replace it?"):
            return
        self.save_review(folder, overwrite=replace)

    def _ask_open_review(self) -> None:
        folder = ask_folder("Open the review in folder")
        if folder is not None:
            self.open_review(folder)

    def _shapes_or_warn(self) -> Shapes | None:
        if self._dock.shapes is None:
            self._dock.warn("choose or make an annotations layer first")
        return self._dock.shapes

    def export_csv(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Write one row of statistics, label and note per annotation."""
        shapes = self._shapes_or_warn()
        if shapes is None:
            return None
        features = ensure_features(shapes)
        columns = [*FEATURE_COLUMNS, *(c for c in features.columns if c not in FEATURE_COLUMNS)]
        path = Path(path)
        try:
            if path.exists() and not overwrite:
                raise FileExistsError(f"{path} already exists; choose another name")
            atomic_write(path, lambda tmp: features[columns].to_csv(tmp, index=False))
        except OSError as err:
            self._dock.warn(f"CSV not written: {err}")
            return None
        self._dock.status.value = f"wrote {len(features)} rows to {path.name}"
        return path

    def _linked_points(self, shapes: Shapes) -> list[Points]:
        """Points layers read from the same QuPath file as ``shapes``."""
        return [
            layer
            for layer in self._dock.viewer.layers
            if isinstance(layer, Points)
            and layer.metadata.get(ANNOTATION_KEY, {}).get("shapes_layer") == shapes.name
        ]

    def export_geojson(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Write the annotations (and points read with them) as QuPath GeoJSON, level-0 pixels."""
        shapes = self._shapes_or_warn()
        if shapes is None:
            return None
        layers, points = list(self._dock.viewer.layers), self._linked_points(shapes)
        try:
            written = write_annotations(path, shapes, layers, overwrite=overwrite, points=points)
        except (OSError, ValueError) as err:
            self._dock.warn(f"GeoJSON not written: {err}")
            return None
        self._dock.status.value = f"wrote {Path(written[0]).name}"
        return Path(written[0])

    @property
    def importing(self) -> bool:
        """Whether a GeoJSON file is being read (or its layers built)."""
        return self._reads.running or self._builds.running

    def import_geojson(self, path: str | Path) -> bool:
        """Read QuPath GeoJSON in a worker, then add a new annotations layer (and a points layer).

        Returns whether reading started (not while another file is read). The layers are
        added on the main thread when the file has been read; the annotations layer becomes
        the dock's.
        """
        image = reference_image(list(self._dock.viewer.layers))
        hooks = JobHooks(
            returned=lambda result: self._add_read(result, path, image),
            stopped=lambda how: self._dock.warn(f"{Path(path).name} not read ({how})"),
        )
        self._dock.status.value = f"reading {Path(path).name}..."
        started = self._reads.start(_read_file, path, image_shape(image), hooks=hooks)
        if not started:
            self._dock.warn("another GeoJSON file is being read; wait for it first")
        return started

    def _add_read(self, result: ReadResult | str, path: str | Path, image: Image | None) -> None:
        if isinstance(result, str):
            self._dock.warn(result)
            return
        try:
            read = result_layers(result, path, image)
        except ValueError as err:
            self._dock.warn(str(err))
            return
        hooks = JobHooks(
            returned=lambda layers: self._add_built(layers, path),
            stopped=lambda how: self._dock.warn(f"{Path(path).name} not read ({how})"),
        )
        self._builds.start(_build_layers, read, hooks=hooks)

    def _add_built(self, layers: list[Layer], path: str | Path) -> None:
        added = [self._dock.viewer.add_layer(layer) for layer in layers]
        kinds = ["shapes" if isinstance(layer, Shapes) else "points" for layer in added]
        counts = ", ".join(
            f"{len(layer.data)} {kind}" for layer, kind in zip(added, kinds, strict=True)
        )
        if isinstance(added[0], Shapes):
            self._dock.annotations.value = added[0]
        self._dock.status.value = f"read {counts} from {Path(path).name}"

    def save_review(self, folder: str | Path, *, overwrite: bool = False) -> Path | None:
        """Save image reference, heatmaps and annotations into ``folder``."""
        dock = self._dock
        shapes, image = self._shapes_or_warn(), dock.image_for()
        if shapes is None or image is None:
            return None
        try:
            path = save_review(dock.viewer, folder, shapes, image, dock.labels, overwrite=overwrite)
        except (OSError, ValueError) as err:
            dock.warn(f"review not saved: {err}")
            return None
        dock.status.value = f"review saved in {Path(folder).name}"
        return path

    def open_review(self, folder: str | Path) -> Layer | None:
        """Reopen a review saved with :meth:`save_review`."""
        dock = self._dock
        try:
            shapes, labels = open_review(dock.viewer, folder)
        except (OSError, ValueError) as err:
            dock.warn(f"review not opened: {err}")
            return None
        for name, colour in labels.as_dict().items():
            dock.labels.add(name, colour)
        dock.annotations.value = shapes
        dock.status.value = f"review reopened from {Path(folder).name}"
        return shapes

    def figure_box(self) -> PixelBox | None:
        """Level-0 pixels to show: around the selected annotations, else the heatmap's box."""
        dock, shapes = self._dock, self._dock.shapes
        image, record = dock.image_for(), HeatmapRecord.of(dock.heatmap.value)
        if image is None or record is None:
            return None
        image_shape = tuple(image.level_shapes[0][-2:])
        selected = sorted(shapes.selected_data) if shapes is not None else []
        matrix = data_to_pixels(shapes, image) if shapes is not None else None
        polygons = [p for i in selected for p in shape_polygons(shapes, i, matrix)]
        if not polygons:
            box = record.box
            return (box.y0, box.x0, box.y1, box.x1)
        box = pixel_box(polygons, image_shape)
        if box is None:
            return None
        y0, x0, y1, x1 = box
        side = max(round(max(y1 - y0, x1 - x0) * (1 + 2 * FIGURE_MARGIN)), MIN_FIGURE_PIXELS)
        return expand_box(box, (side, side), image_shape)

    def export_figure(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Save a PNG of the region with tissue, heatmap, outlines and a colour bar."""
        dock = self._dock
        box, heatmap, image = self.figure_box(), dock.heatmap.value, dock.image_for()
        if box is None:
            dock.warn("choose a heatmap (and select annotations to frame them) first")
            return None
        record = HeatmapRecord.of(heatmap)
        labels = HeatmapFacts(
            record.settings.method, record.target_name, str(record.settings.layer)
        )
        pixels = current_plane(image, dock.viewer.dims.point).levels[0]
        figure = region_figure(
            pixels,
            box,
            record.placed(heatmap.data),
            labels,
            self._outlines(image),
            limits=tuple(heatmap.contrast_limits),
            opacity=float(heatmap.opacity),
            clear_zero=float(heatmap.colormap.map(np.zeros(1))[0, 3]) == 0.0,
        )
        try:
            written = save_figure(figure, path, overwrite=overwrite)
        except OSError as err:
            dock.warn(f"figure not written: {err}")
            return None
        dock.status.value = f"figure saved as {written.name}"
        return written

    def _outlines(self, image: Image) -> list[Outline]:
        shapes, labels = self._dock.shapes, self._dock.labels
        if shapes is None:
            return []
        features = ensure_features(shapes)
        matrix = data_to_pixels(shapes, image)
        outlines = []
        for index, label in enumerate(features["label"]):
            polygons = shape_polygons(shapes, index, matrix)
            if polygons:
                outlines.append(Outline(tuple(polygons), label, labels.colour(label)))
        return outlines
