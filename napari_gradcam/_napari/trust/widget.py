"""The "Grad-CAM trust & compare" dock: controls and wiring (the work is in job.py).

It works on a heatmap layer made by the Grad-CAM dock: its metadata says which model, method,
layer, class and crop of which image made it, so every action re-reads that crop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
    Widget,
)
from napari.layers import Image, Layer
from napari.utils.notifications import show_error, show_warning
from napari.utils.theme import get_theme
from napari.viewer import Viewer
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy

from napari_gradcam._napari.fold import Fold
from napari_gradcam._napari.jobs import FAILED, JobHooks, JobRunner
from napari_gradcam._napari.model_events import ModelInfo, ModelReady
from napari_gradcam._napari.plane import Plane, current_plane
from napari_gradcam._napari.records import HeatmapRecord, is_heatmap
from napari_gradcam._napari.trust.job import Kind, TrustJob, TrustOutcome, run_trust_job, tile_at
from napari_gradcam._napari.trust.layers import (
    BLANK_OPACITY,
    NO_TISSUE,
    TRUST_KEY,
    contrast_layer,
    feature_layer,
    map_layer,
)
from napari_gradcam._napari.trust.plot import CurvesPlot, details_html, verdict_html
from napari_gradcam.core.explain.methods import METHODS

if TYPE_CHECKING:
    from napari_gradcam.core.trust.features import FeatureStack

HEATMAP_LAYER = "heatmap's layer"
PREDICTED = "predicted"
TOP_SHOWN = 5
NO_HEATMAP = (
    "choose a heatmap: explain an image with the Grad-CAM dock first, then pick its layer here"
)
TIPS = {
    "heatmap": "the Grad-CAM heatmap layer to check (made by the Grad-CAM dock)",
    "trust": "scramble the model's weights and hide the map's hot areas to see whether the map "
    "follows the model (about 70 runs of the model on the tile)",
    "baseline": "what hidden pixels become in the hide/reveal test: a blurred copy of the tile, "
    "or the tile's mean tissue colour (try it when blurring keeps the class)",
    "sanity_steps": "how many layers are randomised, from the output backwards, in the "
    "scramble test (more: a stricter test)",
    "feature_layer": "the layer whose channels are shown as feature maps",
    "features": "add the layer's channels as a stack, strongest for the class first",
    "sweep": "the same method at one layer per resolution, side by side",
    "other_class": "the class whose map is subtracted from the heatmap's class",
    "contrast": "one class's map minus another's: where the tissue speaks for one, not the other",
    "methods": "methods to compare (ctrl-click for several)",
    "classes": "classes to compare (ctrl-click for several; predicted: the model's top class)",
    "compare": "one aligned layer per method and class",
    "cancel": "stop the running job after its current step; nothing it made is added",
}


class TrustWidget(Container):
    """Check a heatmap (sanity, faithfulness, noise), look inside its layer and compare maps.

    napari passes the viewer by the name ``napari_viewer``.
    """

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._info: ModelInfo | None = None
        self._shown: Image | None = None
        self._build()
        self._lay_out()
        self.runner = JobRunner(
            self.native,
            "trust",
            progress=self.progress,
            status=self.status,
            on_running=self._set_running,
        )
        self._connect()
        self._on_heatmap_changed(self.heatmap.value)

    def _build(self) -> None:
        self.heatmap = ComboBox(
            label="heatmap", choices=self._heatmap_choices, tooltip=TIPS["heatmap"]
        )
        self.feature_layer = ComboBox(
            label="layer", choices=self._layer_choices, tooltip=TIPS["feature_layer"]
        )
        self.features_button = PushButton(text="Feature maps", tooltip=TIPS["features"])
        self.sweep_button = PushButton(text="Layer sweep", tooltip=TIPS["sweep"])
        self.baseline = ComboBox(
            label="hidden pixels become", choices=("blur", "tissue-mean"), tooltip=TIPS["baseline"]
        )
        self.sanity_steps = SpinBox(
            label="layers to scramble", min=1, max=64, value=3, tooltip=TIPS["sanity_steps"]
        )
        self.trust_button = PushButton(text="Check this map (trust report)", tooltip=TIPS["trust"])
        self.other_class = ComboBox(
            label="contrast with", choices=self._class_choices, tooltip=TIPS["other_class"]
        )
        self.contrast_button = PushButton(text="Class contrast", tooltip=TIPS["contrast"])
        self.methods = Select(
            label="methods", choices=tuple(METHODS), value=["gradcam"], tooltip=TIPS["methods"]
        )
        self.classes = Select(
            label="classes", choices=self._compare_choices, tooltip=TIPS["classes"]
        )
        self.compare_button = PushButton(text="Compare side by side", tooltip=TIPS["compare"])
        self.cancel_button = PushButton(text="Cancel", enabled=False, tooltip=TIPS["cancel"])
        self.progress = ProgressBar(min=0, max=1, value=0, tooltip="progress of the running job")
        self.status, self.verdict, self.details, self.channels = (Label(value="") for _ in range(4))
        for label in (self.status, self.verdict, self.details, self.channels):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        self.status.native.setTextFormat(Qt.TextFormat.PlainText)  # errors shown as written
        self.status.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for select in (self.methods, self.classes):
            select.native.setMaximumHeight(72)
        theme = get_theme(self._viewer.theme)
        self.plot = CurvesPlot(theme.background.as_hex(), theme.text.as_hex())
        self._actions: dict[PushButton, Kind] = {
            self.features_button: "features",
            self.sweep_button: "sweep",
            self.trust_button: "trust",
            self.contrast_button: "contrast",
            self.compare_button: "compare",
        }

    def _lay_out(self) -> None:
        self.details_fold = Fold("details (the numbers)", [self.details], labels=False)
        self.advanced = Fold(
            "advanced options", [_form(self.baseline, self.sanity_steps)], labels=False
        )
        self.features_fold = Fold(
            "look inside the layer (feature maps, layer sweep)",
            [
                _form(self.feature_layer),
                _row(self.features_button, self.sweep_button),
                self.channels,
            ],
            labels=False,
        )
        self.compare_fold = Fold(
            "compare classes and methods",
            [
                _form(self.other_class),
                self.contrast_button,
                _form(self.methods, self.classes),
                self.compare_button,
            ],
            labels=False,
        )
        self.extend(
            [
                _form(self.heatmap),
                self.trust_button,
                self.verdict,
                self.details_fold,
                self.advanced,
                self.features_fold,
                self.compare_fold,
                _row(self.cancel_button, self.progress),
                self.status,
            ]
        )
        self.native.layout().insertWidget(self.index(self.details_fold), self.plot)
        self.plot.setVisible(False)

    def _connect(self) -> None:
        for button, kind in self._actions.items():
            button.changed.connect(lambda _value=None, kind=kind: self.run(kind))
        self.cancel_button.changed.connect(self.runner.cancel)
        self.heatmap.changed.connect(self._on_heatmap_changed)
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.reset_choices)

    def _heatmap_choices(self, _widget: ComboBox) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self._viewer.layers if is_heatmap(layer)]

    def _layer_choices(self, _widget: ComboBox) -> list[tuple[str, str]]:
        return [(HEATMAP_LAYER, HEATMAP_LAYER), *(self._info.layers if self._info else ())]

    def _class_choices(self, _widget: ComboBox) -> tuple[str, ...]:
        return self._info.classes if self._info else ()

    def _compare_choices(self, _widget: Select) -> tuple[str, ...]:
        return (PREDICTED, *self._class_choices(_widget))

    @property
    def running(self) -> bool:
        """Whether a job is under way."""
        return self.runner.running

    def run(self, kind: Kind) -> None:
        """Start ``kind`` ("features", "sweep", "trust", "contrast", "compare" or "load")."""
        if self.running:
            return
        try:
            job, heatmap = self._job(kind)
        except ValueError as err:
            show_error(f"Grad-CAM trust: {err}")
            return
        hooks = JobHooks(
            returned=lambda outcome: self._on_returned(outcome, job, heatmap), event=self._on_event
        )
        self.runner.start(run_trust_job, job, hooks=hooks)

    def _job(self, kind: Kind) -> tuple[TrustJob, Image]:
        heatmap = self.heatmap.value
        if heatmap is None or heatmap not in self._viewer.layers:
            raise ValueError(NO_HEATMAP)
        source = HeatmapRecord.of(heatmap)
        if source is None:
            raise ValueError(NO_HEATMAP)
        if kind == "load":
            return TrustJob(kind, source), heatmap
        layers = self._viewer.layers
        if source.image_layer not in layers or not isinstance(layers[source.image_layer], Image):
            raise ValueError(
                f"the image {source.image_layer!r} of this heatmap is no longer in the viewer; "
                "add it again under that name or explain the image again"
            )
        image = layers[source.image_layer]
        if source.tiles is not None:
            source = tile_at(source, view_centre(self._viewer, image))
        plane = _plane_of(image, source)
        return TrustJob(kind, source, plane, **self._options(kind, source)), heatmap

    def _options(self, kind: Kind, source: HeatmapRecord) -> dict[str, Any]:
        if kind == "contrast" and self.other_class.value in (None, source.settings.target):
            raise ValueError(
                f"choose a class to contrast with other than {source.settings.target!r}"
            )
        if kind == "compare" and not (self.methods.value and self.classes.value):
            raise ValueError("choose at least one method and one class to compare")
        feature = self.feature_layer.value
        return {
            "feature_layer": None if feature in (None, HEATMAP_LAYER) else feature,
            "other": self.other_class.value,
            "methods": tuple(self.methods.value),
            "classes": tuple(None if c == PREDICTED else c for c in self.classes.value),
            "baseline": self.baseline.value,
            "sanity_steps": int(self.sanity_steps.value),
        }

    def _set_running(self, running: bool) -> None:
        for button in self._actions:
            button.enabled = not running
        self.cancel_button.enabled = running

    def _on_event(self, event: object) -> None:
        if isinstance(event, ModelReady) and event.model != self._info:
            self._info = event.model
            for widget in (self.feature_layer, self.other_class, self.classes):
                widget.reset_choices()

    def _on_heatmap_changed(self, heatmap: Image | None) -> None:
        if heatmap is self._shown:
            return  # the same layer, renamed or re-listed
        self._shown = heatmap
        self.verdict.value = self.details.value = self.channels.value = ""
        self.plot.clear()
        self.plot.setVisible(False)
        source = HeatmapRecord.of(heatmap)
        if source is None or self.running:
            return
        known = (self._info.spec, self._info.weights) if self._info else None
        if known != (source.spec, source.weights):
            self.run("load")

    def _on_returned(self, outcome: TrustOutcome, job: TrustJob, heatmap: Image) -> None:
        if outcome.error is not None:
            self.status.value = f"{FAILED}: {outcome.error}"
            show_error(f"Grad-CAM trust: {outcome.error}")
            return
        self.progress.value = self.progress.max  # the job is done, whatever its last step said
        if job.kind == "load":
            self.status.value = f"model {job.source.spec!r} ready"
            return
        layers = self._viewer.layers
        if job.source.image_layer not in layers or heatmap not in layers:
            self.status.value = FAILED
            show_error("Grad-CAM trust: the heatmap or its image was removed while it was checked")
            return
        self._show(outcome, job, heatmap, layers[job.source.image_layer])
        self.status.value = "; ".join((self.status.value, *outcome.notes))
        if outcome.blank:
            show_warning(
                f"Grad-CAM trust: {heatmap.name!r} covers no tissue "
                f"({outcome.tissue_fraction:.1%} of its pixels): its maps are not evidence"
            )

    def _show(self, outcome: TrustOutcome, job: TrustJob, heatmap: Image, image: Image) -> None:
        """Add the outcome's layers all at once, or show the report."""
        if outcome.report is not None:
            self._show_report(outcome, heatmap)
            return
        tuples = [map_layer(e, outcome, image, job.source, job.plane) for e in outcome.maps]
        if outcome.features is not None:
            tuples.append(feature_layer(outcome.features, outcome, image))
            self.channels.value = _top_channels(outcome.features)
        if outcome.contrast is not None:
            tuples.append(contrast_layer(outcome.contrast, outcome, image))
        with kept_view(self._viewer):
            for layer in [Layer.create(*t) for t in tuples]:
                self._viewer.add_layer(layer)
        self.status.value = f"added {len(tuples)} layer(s) in {outcome.seconds:.1f} s"
        if outcome.contrast is not None and not np.any(outcome.contrast.difference):
            self.status.value += (
                f"; the maps are identical ({job.source.settings.method} ignores the class)"
            )

    def _show_report(self, outcome: TrustOutcome, heatmap: Image) -> None:
        report = outcome.report
        self.verdict.value = verdict_html(report)
        self.details.value = details_html(report)
        self.plot.show_report(report)
        self.plot.setVisible(True)
        heatmap.metadata[TRUST_KEY] = report.to_dict()
        if report.noise.blank:
            heatmap.opacity = BLANK_OPACITY
            if not heatmap.name.endswith(NO_TISSUE):
                heatmap.name += NO_TISSUE
        self.status.value = f"trust report: {report.rating} ({outcome.seconds:.1f} s)"


@contextmanager
def kept_view(viewer: Viewer) -> Iterator[None]:
    """Keep the camera's centre and zoom while layers are added.

    napari resets the view when a layer adds a dimension (the feature stack's channels);
    the user's view is what they were checking.
    """
    camera = viewer.scene.camera
    centre, zoom = tuple(camera.center), camera.zoom
    yield
    camera.center, camera.zoom = centre, zoom


def view_centre(viewer: Viewer, image: Image) -> tuple[float, float]:
    """The canvas centre in ``image``'s level-0 data pixels (y, x) of its current plane."""
    point = np.asarray(viewer.dims.point, dtype=float)
    displayed = list(viewer.dims.displayed)
    point[displayed] = np.asarray(viewer.scene.camera.center, dtype=float)[-len(displayed) :]
    y, x = image.world_to_data(point)[-2:]
    return float(y), float(x)


def _form(*widgets: Widget) -> Container:
    """Widgets with their labels in a column."""
    return Container(widgets=widgets, labels=True)


def _row(*widgets: Widget) -> Container:
    """Widgets side by side, without labels."""
    return Container(widgets=widgets, layout="horizontal", labels=False)


def _plane_of(image: Image, source: HeatmapRecord) -> Plane:
    """The plane of ``image`` that the heatmap explained (its recorded stack index)."""
    leading = image.ndim - 2
    index = source.slice_index if len(source.slice_index) == leading else (0,) * leading
    world = image.data_to_world((*index, 0, 0))
    return current_plane(image, world)


def _top_channels(stack: FeatureStack) -> str:
    """The largest contributors as ``channel (contribution)``, in slider order."""
    pairs = ", ".join(f"{c} ({s:+.3g})" for c, s in stack.top(TOP_SHOWN))
    return f"{stack.layer} for {stack.target_name}, slider 0 first: {pairs}"
