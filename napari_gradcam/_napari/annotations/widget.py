"""The "Grad-CAM annotations" dock: hot regions to shapes, live statistics, labels and notes.

Everything about an annotation lives in the annotations Shapes layer's features (id, label,
note, the heatmap its statistics come from, the statistics); the dock only shows and edits
them. Statistics are recomputed, debounced, in a worker thread whenever a shape is added,
moved, edited or removed, or another heatmap is chosen; the table fills batch by batch, and
the class probability arrives later from a thread of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton
from napari.layers import Image, Shapes
from napari.layers.base._base_constants import ActionType
from napari.utils.events import Event
from napari.utils.notifications import show_warning
from napari.viewer import Viewer
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QKeySequence, QShortcut

from napari_gradcam._napari.annotations.autosave_controller import AutosaveController
from napari_gradcam._napari.annotations.file_actions import FileActions
from napari_gradcam._napari.annotations.geojson_io import (
    ANNOTATION_KEY,
    ensure_features,
    reference_image,
    store_features,
)
from napari_gradcam._napari.annotations.history import EditHistory
from napari_gradcam._napari.annotations.hot_options import UNKNOWN_MPP, HotRegionOptions
from napari_gradcam._napari.annotations.job import (
    ShapesCopy,
    StatisticsBatch,
    statistics_batches,
)
from napari_gradcam._napari.annotations.labels import DEFAULT_LABEL, LabelSet
from napari_gradcam._napari.annotations.region_probability import MapModel, RegionProbabilities
from napari_gradcam._napari.annotations.shape_coords import (
    data_to_pixels,
    polygons_to_data,
    shape_centre_world,
)
from napari_gradcam._napari.annotations.style import style_annotations
from napari_gradcam._napari.annotations.table import (
    HEADER_TIPS,
    NO_ANSWER_TIP,
    NO_VALUE,
    SIMILARITY_TIP,
    StatsTable,
)
from napari_gradcam._napari.annotations.units import UnitsOffer
from napari_gradcam._napari.gl_guard import guard_layer_removal
from napari_gradcam._napari.jobs import JobHooks, JobRunner
from napari_gradcam._napari.plane import current_plane, layer_mpp
from napari_gradcam._napari.records import PER_TILE, HeatmapRecord, is_gradcam_layer, is_heatmap
from napari_gradcam._napari.result_layers import annotations_layer
from napari_gradcam._napari.target_words import is_similarity, names_a_class
from napari_gradcam.core.regions.region_stats import STATISTICS, PixelBox
from napari_gradcam.core.targets import OutputRegion

DEBOUNCE_MS = 150
UNDO_KEYS, REDO_KEYS = "Ctrl+Z", "Ctrl+Shift+Z"
"""In the dock (Qt); on the canvas, with the annotations layer active, napari's own spelling:"""
LAYER_UNDO_KEYS, LAYER_REDO_KEYS = "Control-Z", "Control-Shift-Z"
FINAL_ACTIONS = (ActionType.ADDED, ActionType.REMOVED, ActionType.CHANGED)


class AnnotationWidget(Container):
    """Annotate over heatmaps: hot regions, statistics per shape, labels and notes."""

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        guard_layer_removal(napari_viewer)
        self.labels = LabelSet()
        self.shapes: Shapes | None = None
        self._showing_row = False
        self.probabilities = RegionProbabilities(self.schedule_refresh, self.warn)
        self.heatmap = ComboBox(
            label="heatmap",
            choices=self._heatmaps,
            nullable=True,
            tooltip="the Grad-CAM heatmap the statistics and hot regions come from",
        )
        self.annotations = ComboBox(
            label="annotations",
            choices=self._shapes_layers,
            nullable=True,
            tooltip="the Shapes layer holding your annotations (draw on it with napari's tools)",
        )
        self.hot = HotRegionOptions()
        self.hot_button = PushButton(
            text="Add hot regions",
            tooltip="outline the heatmap's hottest regions as annotations (see more options)",
        )
        self.label = ComboBox(
            label="label",
            choices=self._label_names,
            value=DEFAULT_LABEL,
            tooltip="label of the selected annotations, and of those you draw next",
        )
        self.new_label = LineEdit(tooltip="name of a label to add to the list")
        self.new_label.native.setPlaceholderText("new label name")
        self.add_label_button = PushButton(
            text="Add label", tooltip="add the label to the list; no annotation is relabelled"
        )
        self.label_row = Container(
            widgets=[self.new_label, self.add_label_button], layout="horizontal", labels=False
        )
        self.note = LineEdit(label="note", tooltip="note of the selected annotations (Enter)")
        self.history: EditHistory | None = None
        self.undo_button = PushButton(text="Undo", tooltip="undo the last annotation edit (Ctrl+Z)")
        self.redo_button = PushButton(text="Redo", tooltip="redo the edit undone (Ctrl+Shift+Z)")
        self.undo_row = Container(
            widgets=[self.undo_button, self.redo_button], layout="horizontal", labels=False
        )
        self.status = Label(label="status", value="", tooltip="what the dock did last")
        self.status.native.setWordWrap(True)
        self.units_offer = UnitsOffer()
        self.table = StatsTable()
        self.files = FileActions(self)
        controls = [self.heatmap, self.annotations, self.hot_button, self.hot]
        editors = [self.label, self.label_row, self.note, self.undo_row]
        self.extend([*controls, *editors, self.status, self.units_offer])
        self.native.layout().insertWidget(len(controls), self.table)
        self.native.layout().insertWidget(len(controls) + 1 + len(editors), self.files.native)
        # not watched as a dock's job: the dock cancels it when it is destroyed (see
        # _disconnect), and a Qt widget deleted under a running watch cannot be asked
        self.jobs = JobRunner(on_running=self._on_statistics_running)
        self._edits, self._stale, self._closed = 0, False, False
        self._timer = QTimer(self.native, singleShot=True, interval=DEBOUNCE_MS)
        self._offer_timer = QTimer(self.native, singleShot=True, interval=0)
        self._connect()
        self._pick_defaults()
        self.autosave = AutosaveController(self)

    def _pick_defaults(self) -> None:
        """Choose the newest heatmap and the first annotations layer, if any."""
        heatmaps = self._heatmaps(self.heatmap)
        if heatmaps:
            self.heatmap.value = heatmaps[-1][1]
        layers = self._shapes_layers(self.annotations)
        self.annotations.value = layers[0][1] if layers else None
        self._attach(self.annotations.value)

    def _connect(self) -> None:
        self._timer.timeout.connect(self.refresh)
        self._offer_timer.timeout.connect(self._offer_heatmaps)
        self.heatmap.changed.connect(self.schedule_refresh)
        self.annotations.changed.connect(self._attach)
        self.hot_button.changed.connect(self.add_hot_regions)
        self.label.changed.connect(self.set_label)
        self.note.native.editingFinished.connect(lambda: self.set_note(self.note.value))
        self.add_label_button.changed.connect(lambda: self.add_label(self.new_label.value))
        self.table.row_selected.connect(self.select_annotation)
        self.undo_button.changed.connect(self.undo)
        self.redo_button.changed.connect(self.redo)
        for keys, action in ((UNDO_KEYS, self.undo), (REDO_KEYS, self.redo)):
            shortcut = QShortcut(QKeySequence(keys), self.native)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(action)
        events = self.viewer.layers.events
        events.inserted.connect(self._on_inserted)
        events.removed.connect(self._on_removed)
        events.reordered.connect(self.reset_choices)
        for layer in self.viewer.layers:
            layer.events.data.connect(self._on_layer_data)
        self.native.destroyed.connect(self._disconnect)

    def _disconnect(self) -> None:
        """Stop listening to the viewer once the dock is gone (e.g. the window closed)."""
        self.probabilities.close()
        self._closed = True  # batches and outcomes still arriving are dropped
        self.jobs.cancel()
        events = self.viewer.layers.events
        events.inserted.disconnect(self._on_inserted)
        events.removed.disconnect(self._on_removed)
        events.reordered.disconnect(self.reset_choices)
        for layer in self.viewer.layers:
            layer.events.data.disconnect(self._on_layer_data)
        self._detach()

    def _detach(self) -> None:
        """Stop following the current annotations layer."""
        if self.shapes is not None:
            self.shapes.events.data.disconnect(self._on_data)
            self.shapes.selected_data.events.items_changed.disconnect(self._on_canvas_selection)

    def _heatmaps(self, _widget: ComboBox) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if is_heatmap(layer)]

    def _shapes_layers(self, _widget: ComboBox) -> list[tuple[str, Shapes]]:
        layers = [layer for layer in self.viewer.layers if isinstance(layer, Shapes)]
        layers.sort(key=lambda layer: ANNOTATION_KEY not in layer.metadata)
        return [(layer.name, layer) for layer in layers]

    def _label_names(self, _widget: ComboBox) -> tuple[str, ...]:
        return self.labels.names

    def warn(self, message: str) -> None:
        """Show ``message`` in the dock and as a napari warning."""
        self.status.value = message
        show_warning(f"Grad-CAM annotations: {message}")

    def image_for(self, heatmap: Image | None = None) -> Image | None:
        """Return the image a heatmap was made from, else the annotations' image."""
        record = HeatmapRecord.of(heatmap or self.heatmap.value)
        name = record.image_layer if record is not None else None
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Image):
            return self.viewer.layers[name]
        return reference_image(list(self.viewer.layers), self.shapes)

    def _on_inserted(self, event: Event) -> None:
        event.value.events.data.connect(self._on_layer_data)
        self._offer_heatmaps()
        self.reset_choices()
        if self.shapes is None and isinstance(event.value, Shapes):
            self.annotations.value = event.value
        if not is_gradcam_layer(event.value):
            self.units_offer.check(event.value, reference_image(list(self.viewer.layers)))

    def _on_layer_data(self, _event: Event) -> None:
        """A layer's data was replaced: a tiled heatmap may just have been finished."""
        self._offer_timer.start()

    def _offer_heatmaps(self) -> None:
        """List the finished heatmaps; choose a new one when none is chosen."""
        before = {id(layer) for layer in self.heatmap.choices}
        self.heatmap.reset_choices()
        new = [layer for layer in self.heatmap.choices if id(layer) not in before]
        if self.heatmap.value is None and new:
            self.heatmap.value = new[-1]

    def _on_removed(self, event: Event) -> None:
        event.value.events.data.disconnect(self._on_layer_data)
        shown, attached = self.heatmap.value, self.shapes
        self.reset_choices()
        if event.value is shown:
            self.heatmap.value = None
            self.warn(
                f"the heatmap {event.value.name!r} was removed; the statistics shown were "
                "computed from it and are kept; choose another heatmap to recompute them"
            )
        if event.value is attached:
            self.annotations.value = None
            self.warn(f"the annotations layer {event.value.name!r} was removed")

    def _attach(self, shapes: Shapes | None) -> None:
        self._detach()
        self.shapes = shapes
        if shapes is not None:
            record = shapes.metadata.setdefault(ANNOTATION_KEY, {})
            for name, colour in record.get("labels", {}).items():
                self.labels.add(name, colour)
            image = self.image_for()
            if image is not None:
                record.setdefault("image_layer", image.name)
            shapes.events.data.connect(self._on_data)
            shapes.selected_data.events.items_changed.connect(self._on_canvas_selection)
            self.label.reset_choices()
        self.refresh()
        if shapes is not None:
            style_annotations(shapes, self.image_for(), widen=True)
            self.history = EditHistory(shapes)
            shapes.bind_key(LAYER_UNDO_KEYS, lambda _layer: self.undo(), overwrite=True)
            shapes.bind_key(LAYER_REDO_KEYS, lambda _layer: self.redo(), overwrite=True)
        else:
            self.history = None
        self._show_history()

    def _on_data(self, event: Event) -> None:
        self._edits += 1
        if getattr(event, "action", None) in FINAL_ACTIONS:
            self.schedule_refresh()

    def schedule_refresh(self, *_args: object) -> None:
        """Refresh the statistics shortly (edits in quick succession refresh once)."""
        self._timer.start()

    def refresh(self) -> None:
        """Show every shape's label and colour now; recompute its statistics in a thread."""
        self._timer.stop()
        shapes = self.shapes
        if shapes is None:
            self.table.setRowCount(0)
            return
        features = ensure_features(shapes, self.label.value)
        heatmap = self.heatmap.value
        self._describe_map(heatmap)
        for label in features["label"]:
            self.labels.colour(label)
        shapes.metadata[ANNOTATION_KEY]["labels"] = self.labels.as_dict()
        self.label.reset_choices()
        if len(features):
            shapes.edge_color = [self.labels.rgba(label) for label in features["label"]]
        self.table.show_features(features, [self.labels.colour(name) for name in features["label"]])
        if self.history is not None and self.history.shapes is shapes:
            self.history.record()
            self._show_history()
        if heatmap is not None:
            self._start_statistics(shapes, heatmap)
        else:
            self.probabilities.start()

    @property
    def computing(self) -> bool:
        """Whether statistics are being computed or are due."""
        return self.jobs.running or self._stale or self._timer.isActive()

    def _start_statistics(self, shapes: Shapes, heatmap: Image) -> None:
        """Compute the statistics of every shape in a worker; the table fills batch by batch."""
        if self.jobs.running:
            self._stale = True
            self.jobs.cancel()
            return
        image = self.image_for(heatmap)
        placed = HeatmapRecord.of(heatmap).placed(heatmap.data)
        image_shape = tuple(image.level_shapes[0][-2:]) if image is not None else None
        mpp = layer_mpp(image) if image is not None else None
        probability = self._probability(heatmap, image)
        edits = self._edits
        measured = shapes.features.copy()
        measured["heatmap"] = heatmap.name
        hooks = JobHooks(
            event=lambda event: self._on_statistics(event, shapes, measured, probability, edits),
            returned=lambda _count: self._store_statistics(shapes, measured, edits),
        )
        copy = ShapesCopy.of(shapes)
        matrix = data_to_pixels(shapes, image)
        self.jobs.start(statistics_batches, copy, placed, matrix, mpp, image_shape, hooks=hooks)

    def _on_statistics_running(self, running: bool) -> None:
        if not running and self._stale and not self._closed:
            self._stale = False
            self.schedule_refresh()

    def _current(self, shapes: Shapes, edits: int) -> bool:
        """Whether ``shapes`` is still the dock's layer, unchanged since ``edits``."""
        return not self._closed and shapes is self.shapes and edits == self._edits

    def _on_statistics(
        self,
        event: object,
        shapes: Shapes,
        measured: pd.DataFrame,
        probability: Callable[[PixelBox], float] | None,
        edits: int,
    ) -> None:
        """Show one batch of statistics in the table (unless the shapes changed since)."""
        if not isinstance(event, StatisticsBatch) or not self._current(shapes, edits):
            return
        stop = event.start + len(event.rows)
        values = np.array([[row[name] for name in STATISTICS] for row in event.rows])
        if probability is not None:
            column = STATISTICS.index("probability")
            for offset, box in enumerate(event.boxes):
                if box is not None:
                    values[offset, column] = float(probability(box))
        columns = [measured.columns.get_loc(name) for name in STATISTICS]
        measured.iloc[event.start : stop, columns] = values
        colours = [self.labels.colour(name) for name in measured["label"]]
        self.table.show_rows(measured, colours, event.start, stop)

    def _store_statistics(self, shapes: Shapes, measured: pd.DataFrame, edits: int) -> None:
        """Store the finished statistics in the layer once (labels and notes as they are now)."""
        if not self._current(shapes, edits):
            return
        features = shapes.features.copy()
        for name in (*STATISTICS, "heatmap"):
            features[name] = measured[name].to_numpy()
        store_features(shapes, features, self.label.value)
        self.table.resizeColumnsToContents()
        self.probabilities.start()

    def _show_history(self) -> None:
        history = self.history
        self.undo_button.enabled = history is not None and history.can_undo
        self.redo_button.enabled = history is not None and history.can_redo

    def undo(self) -> None:
        """Undo the last edit of the annotations layer (add, delete, move, label, note)."""
        if self.history is not None and self.history.undo():
            self.status.value = "undone"
            self.refresh()

    def redo(self) -> None:
        """Redo the last undone edit."""
        if self.history is not None and self.history.redo():
            self.status.value = "redone"
            self.refresh()

    def _describe_map(self, heatmap: Image | None) -> None:
        """Give the table the heatmap's range (for shares of it) and its class (for p(class))."""
        record = HeatmapRecord.of(heatmap) if heatmap is not None else None
        if record is None:
            self.table.map_range = None
            self.table.name_class(None)
            return
        cam = np.asarray(record.placed(heatmap.data).cam, dtype=float)
        finite = cam[np.isfinite(cam)]
        self.table.map_range = (float(finite.min()), float(finite.max())) if finite.size else None
        target, explained = record.settings.target, record.target_name
        if names_a_class(target):
            self.table.name_class("predicted class" if explained == PER_TILE else explained)
        elif is_similarity(target):
            self.table.name_answer("similarity", SIMILARITY_TIP.format(explained), explained)
        elif isinstance(target, OutputRegion):
            self.table.name_answer(f"p({NO_VALUE})", NO_ANSWER_TIP.format(explained), explained)
        else:
            self.table.name_answer(f"p({explained})", HEADER_TIPS["probability"], explained)

    def _probability(
        self, heatmap: Image, image: Image | None
    ) -> Callable[[PixelBox], float] | None:
        """Return the cached class-probability lookup for the heatmap's model, if it has one."""
        model = MapModel.of(heatmap)
        if model is None or image is None:
            return None
        plane = current_plane(image, self.viewer.dims.point)
        key = (image.name, plane.slice_index)
        return lambda box: self.probabilities.lookup(model, key, plane, box)

    def add_hot_regions(self) -> None:
        """Outline the chosen heatmap's hot regions as polygons on the annotations layer."""
        heatmap = self.heatmap.value
        image = self.image_for(heatmap)
        record = HeatmapRecord.of(heatmap)
        if record is None or image is None:
            self.warn("choose a heatmap made by the Grad-CAM widget, over its image")
            return
        placed = record.placed(heatmap.data)
        mpp = layer_mpp(image)
        try:
            polygons = self.hot.polygons(placed, mpp)
        except ValueError as err:
            self.warn(str(err))
            return
        if not polygons:
            self.warn("no hot region at this threshold; lower it or the smallest size")
            return
        limit = np.asarray(image.level_shapes[0][-2:], dtype=float) - 0.5
        shapes = self.shapes or self._new_annotations_layer(image)
        matrix = data_to_pixels(shapes, image)
        clipped = [p.mapped(lambda px: np.clip(px, -0.5, limit)) for p in polygons]
        first = len(shapes.data)
        shapes.add([polygons_to_data([p], matrix) for p in clipped], shape_type="polygon")
        features = ensure_features(shapes, self.label.value)
        features.loc[features.index[first:], "note"] = self.hot.describe()
        store_features(shapes, features, self.label.value)
        unknown = "" if mpp else f" (the image has no pixel size: taken as {UNKNOWN_MPP} µm)"
        self.status.value = f"added {len(polygons)} hot region(s) from {heatmap.name!r}{unknown}"
        self.refresh()

    def _new_annotations_layer(self, image: Image) -> Shapes:
        layer = annotations_layer(image)
        layer.metadata[ANNOTATION_KEY] = {"image_layer": image.name}
        self.viewer.add_layer(layer)
        self.annotations.value = layer
        return layer

    def select_annotation(self, index: int) -> None:
        """Select shape ``index``, centre the view on it and show its label and note."""
        shapes = self.shapes
        if shapes is None or not 0 <= index < len(shapes.data):
            return
        self.viewer.layers.selection.active = shapes
        shapes.mode = "select"
        shapes.selected_data = {index}
        centre = shape_centre_world(shapes, index)
        camera = self.viewer.scene.camera
        camera.center = (*camera.center[:-2], *centre)
        self._show_row(index)

    def _on_canvas_selection(self, *_args: object) -> None:
        """Follow a selection made on the canvas: its row in the table, its label and note."""
        selected = sorted(self.shapes.selected_data) if self.shapes is not None else []
        index = selected[0] if len(selected) == 1 else None
        self.table.show_selected(index)
        if index is not None and index < len(self.shapes.features):
            self._show_row(index)

    def _show_row(self, index: int) -> None:
        """Show the label and note of shape ``index`` in the controls (editing nothing)."""
        row = self.shapes.features.iloc[index]
        self._showing_row = True
        self.label.value = row["label"]
        self.note.value = row["note"]
        self._showing_row = False

    def _edit_selected(self, column: str, value: str) -> None:
        shapes = self.shapes
        if self._showing_row or shapes is None or not shapes.selected_data:
            return
        features = ensure_features(shapes, self.label.value)
        features.loc[features.index[sorted(shapes.selected_data)], column] = value
        store_features(shapes, features, self.label.value)
        self.refresh()

    def set_label(self, name: str) -> None:
        """Label the selected annotations ``name`` (new shapes get it too)."""
        self._edit_selected("label", name)

    def set_note(self, text: str) -> None:
        """Give the selected annotations the note ``text``."""
        self._edit_selected("note", text)

    def add_label(self, name: str) -> None:
        """Add a label to the list (with the next free colour) and choose it for new shapes.

        No existing shape is relabelled, selected or not.
        """
        try:
            self.labels.add(name)
        except ValueError as err:
            self.warn(str(err))
            return
        self.label.reset_choices()
        self._showing_row = True  # choosing the new label relabels nothing
        self.label.value = name.strip()
        self._showing_row = False
        if self.shapes is not None:
            defaults = self.shapes.feature_defaults.iloc[0].to_dict()
            self.shapes.feature_defaults = {**defaults, "label": name.strip()}
        self.new_label.value = ""
        self.status.value = (
            f"label {name.strip()!r} added: shapes you draw next get it; to relabel shapes, "
            "select them and choose it"
        )
