"""The "Grad-CAM" dock widget: controls and wiring only (the work is in job.py)."""

from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from magicgui.widgets.bases import ValueWidget
from napari.layers import Image, Layer, Shapes
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from napari.viewer import Viewer
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import QSizePolicy

from napari_gradcam._napari.docking import tab_plugin_docks
from napari_gradcam._napari.explain import tips
from napari_gradcam._napari.explain.job import ExplainJob, JobOutcome, run_job
from napari_gradcam._napari.explain.map_stack import EARLIER_CHOICES, HIDE, REPLACE, MapStack
from napari_gradcam._napari.explain.region_query import OutputMask
from napari_gradcam._napari.explain.target_controls import OUTPUT, PREDICTED, TargetControls
from napari_gradcam._napari.explain.tiled_job import TiledUpdate
from napari_gradcam._napari.explain.tiled_review import TILED_TIP, TiledReview
from napari_gradcam._napari.gl_guard import guard_layer_removal
from napari_gradcam._napari.heatmap_style import DEFAULT_OPACITY, show_colorbar
from napari_gradcam._napari.jobs import JobHooks, JobRunner
from napari_gradcam._napari.model_events import ModelInfo, ModelReady
from napari_gradcam._napari.plane import current_plane
from napari_gradcam._napari.records import is_gradcam_layer
from napari_gradcam._napari.regions import RECTANGLES, REGION_CHOICES, region_boxes
from napari_gradcam._napari.result_layers import (
    ANNOTATIONS_NAME,
    annotations_layer,
    heatmap_layer,
    model_label,
)
from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.method_options import OptionSpec, option_specs
from napari_gradcam.core.explain.methods import METHODS
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.models.bundled import BUNDLED
from napari_gradcam.models.specs import card_location

MAX_COUNT = 16
"""Indices offered (heads) while the model's count is unknown (``explain`` refuses too many)."""
OPTIONS = {spec.key: spec for m in METHODS.values() for _, spec in option_specs(m.options)}
"""Every method option by key: one control each, shown for the methods that take it."""
AUTO_LAYER = "auto"
BUNDLED_MODELS = tuple(BUNDLED)
"""Specs of the bundled demo models."""
OWN_MODEL = "your own (below)"
EXPLAIN_KEYS, CANCEL_KEYS = "Ctrl+Return", "Escape"
"""Shortcuts while the dock has focus (napari binds neither there)."""


class GradCamWidget(Container):
    """Explain an image layer with a classifier and add the heatmap as a layer.

    napari passes the viewer by the name ``napari_viewer``.
    """

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        guard_layer_removal(napari_viewer)
        self._running_on: Image | None = None
        self._model_info: ModelInfo | None = None
        self._wanted_target = PREDICTED
        self._refreshing = False
        self._closed = False
        self.maps = MapStack(napari_viewer)
        self.tiles = TiledReview(napari_viewer)
        self._build_model_controls()
        self._build_method_controls()
        self._build_run_controls()
        self.advanced = Container(
            widgets=[
                self.weights,
                self.load_button,
                self.layer,
                *self.option_controls.values(),
                self.tta,
                self.bfloat16,
                *self.tiles.controls,
            ],
            labels=True,
            visible=False,
        )
        self.advanced.margins = (0, 0, 0, 0)
        self.extend(
            [
                self.image,
                self.bundled,
                self.model,
                self.method,
                *self.targets.controls,
                self.region,
                self.shapes,
                self.tiles.tiled,
                self.tiles.show_helpers,
                self.earlier,
                self.opacity,
                self.show_advanced,
                self.advanced,
                self.explain_button,
                self.cancel_button,
                self.progress,
            ]
        )
        self.native.layout().addWidget(self.result.native)  # the whole width: never cut
        self.native.layout().addWidget(self.tiles.table, 100)
        self.native.layout().addWidget(self.tiles.export.native)
        self.native.layout().addStretch(1)
        self.runner = JobRunner(
            self.native,
            "Grad-CAM",
            progress=self.progress,
            status=self.result,
            on_running=self._set_running,
        )
        self._connect()
        self._on_region_changed(self.region.value)
        self._on_method_changed(self.method.value)
        self._read_card()
        self.native.destroyed.connect(self._on_destroyed)
        tab_plugin_docks(self.native)

    def _on_destroyed(self) -> None:
        self._closed = True

    def _build_model_controls(self) -> None:
        """The image, the model (bundled or own, its weights) and its layer and classes."""
        self.image = ComboBox(label="image", choices=self._image_choices, tooltip=tips.IMAGE_TIP)
        self.bundled = ComboBox(
            label="bundled model", choices=(*BUNDLED_MODELS, OWN_MODEL), tooltip=tips.BUNDLED_TIP
        )
        self.model = FileEdit(label="model", mode="r", tooltip=tips.MODEL_TIP)
        self.model.line_edit.value = "demo"
        self.weights = FileEdit(label="weights", mode="r", nullable=True, tooltip=tips.WEIGHTS_TIP)
        self.load_button = PushButton(text="Load model", tooltip=tips.LOAD_TIP)
        self.layer = ComboBox(
            label="model layer", choices=self._layer_choices, tooltip=tips.LAYER_TIP
        )
        self.targets = TargetControls(self._viewer)
        self.target = self.targets.target

    def _build_method_controls(self) -> None:
        """The method, its own options (shown only for it) and how it runs."""
        self.method = ComboBox(
            label="method", choices=self._method_choices, value="gradcam", tooltip=tips.METHOD_TIP
        )
        self.option_controls = {key: _option_control(spec) for key, spec in OPTIONS.items()}
        self.tta = CheckBox(text="average over flips (TTA)", value=False, tooltip=tips.TTA_TIP)
        self.bfloat16 = CheckBox(
            text="bfloat16 forwards (faster, approximate)", value=False, tooltip=tips.BFLOAT16_TIP
        )

    def _build_run_controls(self) -> None:
        """Region, how maps are shown, the buttons, and where progress and messages go."""
        self.region = ComboBox(label="region", choices=REGION_CHOICES, tooltip=tips.REGION_TIP)
        self.shapes = ComboBox(
            label="rectangles in", choices=self._shapes_choices, tooltip=tips.SHAPES_TIP
        )
        self.earlier = ComboBox(
            label="earlier maps", choices=EARLIER_CHOICES, value=HIDE, tooltip=tips.EARLIER_TIP
        )
        self.opacity = FloatSlider(
            label="map opacity",
            min=0.0,
            max=1.0,
            step=0.05,
            value=DEFAULT_OPACITY,
            tooltip=tips.OPACITY_TIP,
        )
        self.show_advanced = CheckBox(
            text="advanced options", value=False, tooltip=tips.ADVANCED_TIP
        )
        self.explain_button = PushButton(text="Explain", tooltip=tips.EXPLAIN_TIP)
        self.cancel_button = PushButton(text="Cancel", enabled=False, tooltip=tips.CANCEL_TIP)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.result = Label(value="", tooltip=tips.RESULT_TIP)
        label = self.result.native
        label.setWordWrap(True)
        label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setMinimumHeight(3 * label.fontMetrics().lineSpacing())

    def _connect(self) -> None:
        self.explain_button.changed.connect(self.explain)
        self.load_button.changed.connect(self.load_model)
        self.cancel_button.changed.connect(self.runner.cancel)
        for keys, action in ((EXPLAIN_KEYS, self.explain), (CANCEL_KEYS, self.runner.cancel)):
            shortcut = QShortcut(QKeySequence(keys), self.native)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(action)
        self.model.changed.connect(self._forget_model)
        self.bundled.changed.connect(self._on_bundled_changed)
        self.weights.changed.connect(self._forget_model)
        self.region.changed.connect(self._on_region_changed)
        self.targets.kind.changed.connect(self._on_kind_changed)
        self.method.changed.connect(self._on_method_changed)
        self.target.changed.connect(self._on_target_changed)
        self.targets.on_prompt_entered(self.explain)
        self.opacity.changed.connect(self._on_opacity_changed)
        self.show_advanced.changed.connect(lambda show: setattr(self.advanced, "visible", show))
        layer_events = self._viewer.layers.events
        for event in (layer_events.inserted, layer_events.removed, layer_events.reordered):
            event.connect(self.reset_choices)
        layer_events.removed.connect(self._on_layer_removed)

    def _layer_choices(self, _widget: ComboBox) -> list[tuple[str, str]]:
        """Auto, then each layer labelled with its grid, e.g. "blocks.11.norm1 (tokens 14x14)"."""
        layers = self._model_info.layers if self._model_info else ()
        return [(AUTO_LAYER, AUTO_LAYER), *layers]

    def _method_choices(self, _widget: ComboBox) -> list[tuple[str, str]]:
        """Each method by its title (e.g. "Score-CAM"), valued by its registry name."""
        return [(method.title, name) for name, method in METHODS.items()]

    def _image_choices(self, _widget: ComboBox) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not is_gradcam_layer(layer)
        ]

    def _shapes_choices(self, _widget: ComboBox) -> list[tuple[str, Shapes]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Shapes)]

    @property
    def model_spec(self) -> str:
        """The model spec typed or picked in the model field."""
        return self.model.line_edit.value.strip()

    @model_spec.setter
    def model_spec(self, spec: str) -> None:
        self.model.line_edit.value = spec

    @property
    def running(self) -> bool:
        """Whether a job is under way."""
        return self.runner.running

    def explain(self) -> None:
        """Explain the chosen region of the chosen image in a background thread."""
        if self.running:
            return
        try:
            job, layer = self._explain_job()
        except ValueError as err:
            self._fail(f"Grad-CAM: {err}")
            return
        self.targets.remember(job.settings.target)
        self._start(job, layer)

    def load_model(self) -> None:
        """Load the model in a background thread to list its layers and classes."""
        if self.running:
            return
        if not self.model_spec:
            self._fail(f"Grad-CAM: enter a model: {tips.MODEL_TIP}")
            return
        self._start(self._model_job(), None)

    def _fail(self, message: str) -> None:
        """Say why nothing was made: in full in the dock, shortened in napari's toast."""
        self.result.value = message
        self.progress.value = 0
        show_error(message)

    def _model_job(self, **kwargs: Any) -> ExplainJob:
        weights = self.weights.value
        return ExplainJob(self.model_spec, str(weights) if weights else None, **kwargs)

    def _explain_job(self) -> tuple[ExplainJob, Image]:
        layer = self.image.value
        if layer is None:
            raise ValueError("add an image layer first (File > Open Sample > napari-gradcam)")
        if not self.model_spec:
            raise ValueError(f"enter a model: {tips.MODEL_TIP}")
        plane = current_plane(layer, self._viewer.dims.point)
        boxes = region_boxes(self._viewer, layer, plane.shape, self.region.value, self.shapes.value)
        region_target = self.targets.region_target(layer, plane.shape)
        tiling = self.tiles.options(self.model_spec, self.method.value)
        job = self._model_job(
            settings=self.settings(),
            plane=plane,
            boxes=boxes,
            tiling=None if isinstance(region_target, OutputMask) else tiling,
            tissue=self.tiles.cached_tissue(layer, plane),
            region_target=region_target,
        )
        return job, layer

    def _start(self, job: ExplainJob, layer: Image | None) -> None:
        hooks = JobHooks(
            returned=lambda outcome: self._on_returned(outcome, job, layer),
            event=self._on_event,
            stopped=self._on_stopped,
            errored=show_error,
        )
        self._running_on = layer
        if layer is not None:
            self.tiles.start(job, layer, lambda added: self._show_map(added, layer))
        self.runner.start(run_job, job, hooks=hooks)

    def _on_stopped(self, _how: str) -> None:
        """A run ended without a result: drop its half-made maps, show the earlier ones."""
        self.tiles.discard()
        self.maps.restore()

    def _set_running(self, running: bool) -> None:
        self.explain_button.enabled = self.load_button.enabled = not running
        self.cancel_button.enabled = running

    def _on_layer_removed(self, event: Any) -> None:
        if self.running and event.value == self._running_on:  # == : napari may hand proxies
            self.runner.halt(f"the layer {event.value.name!r} was removed")

    def _on_event(self, event: Any) -> None:
        if isinstance(event, ModelReady):
            self.show_model_info(event.model)
        elif isinstance(event, TiledUpdate) and not self.tiles.apply(event):
            self.runner.halt("the heatmap layer was closed")

    def show_model_info(self, info: ModelInfo) -> None:
        """Offer the layers and classes of a loaded model, if it is the one in the fields."""
        if (info.spec, info.weights) == (self.model_spec, self._model_job().weights):
            self._offer(info)

    def _offer(self, info: ModelInfo | None) -> None:
        """Offer ``info``'s layers, classes and heads; keep the chosen target if it has it."""
        self._model_info = info
        self._refreshing = True
        try:
            self.layer.reset_choices()
            self.targets.offer(info)
            for key, spec in OPTIONS.items():
                if spec.count:
                    count = (getattr(info, spec.count) if info else None) or MAX_COUNT
                    self.option_controls[key].max = count - 1
        finally:
            self._refreshing = False
        wanted = self._wanted_target
        if wanted in self.target.choices:
            self.target.value = wanted
        elif info is not None and info.classes:
            name = model_label(info.spec, info.weights)
            self.result.value = (
                f'target reset to "{PREDICTED}": {name} has no class "{wanted}" '
                f"(its classes: {', '.join(info.classes)})"
            )
            self._wanted_target = PREDICTED

    def _on_target_changed(self, target: str) -> None:
        if not self._refreshing:
            self._wanted_target = target

    def _read_card(self) -> None:
        """List the model's classes from its card (JSON) in a worker: no weights loaded."""
        spec, weights = self.model_spec, self._model_job().weights
        if not spec:
            return

        def offer(card: ModelCard | None) -> None:
            if self._closed or card is None:
                return
            same = (spec, weights) == (self.model_spec, self._model_job().weights)
            if self._model_info is None and same:
                self._offer(ModelInfo(spec, weights, card.classes, (), output=card.output))

        def say(error: Exception) -> None:
            if not self._closed:
                self.result.value = f"the model card cannot be read: {error}"

        create_worker(card_of, spec, weights, _connect={"returned": offer, "errored": say})

    def _on_bundled_changed(self, choice: str) -> None:
        if choice != OWN_MODEL:
            self.weights.value = None  # they were the previous model's, not this one's
            self.model_spec = choice

    def _forget_model(self) -> None:
        self.bundled.value = self.model_spec if self.model_spec in BUNDLED_MODELS else OWN_MODEL
        self._offer(None)
        self._read_card()

    def _on_region_changed(self, region: str) -> None:
        self.shapes.visible = region == RECTANGLES

    def _on_kind_changed(self, kind: str) -> None:
        """An output region is explained in one piece: the tiling box is greyed, and says so."""
        whole = kind == OUTPUT
        self.tiles.tiled.enabled = not whole
        self.tiles.tiled.tooltip = tips.NOT_TILED_TIP if whole else TILED_TIP

    def _on_method_changed(self, method: str) -> None:
        found = METHODS[method]
        self.bfloat16.visible = found.bfloat16
        taken = {spec.key for _, spec in option_specs(found.options)}
        for key, control in self.option_controls.items():
            control.visible = key in taken

    def _on_opacity_changed(self, opacity: float) -> None:
        newest = self.maps.newest
        if newest is not None and newest in self._viewer.layers:
            newest.opacity = opacity

    def settings(self) -> ExplainSettings:
        """What the controls ask for: the chosen method with its own options only.

        Raises ``ValueError`` when the target's controls are incomplete. A region target
        (like a region, output region) is finished by the job: its target here is None.
        """
        found = METHODS[self.method.value]
        options = {
            name: _option_value(spec, self.option_controls[spec.key].value)
            for name, spec in option_specs(found.options)
        }
        return ExplainSettings(
            method=found.name,
            layer=None if self.layer.value == AUTO_LAYER else self.layer.value,
            target=self.targets.target_value(),
            tta=self.tta.value,
            bfloat16=self.bfloat16.value and found.bfloat16,
            options=found.options(**options),
        )

    def _on_returned(self, outcome: JobOutcome, job: ExplainJob, layer: Image | None) -> None:
        if outcome.error is not None:
            self._on_stopped("failed")
            self._fail(f"Grad-CAM: {outcome.error}")
            return
        if layer is None or not outcome.results:
            self.result.value = f"model loaded in {outcome.seconds:.1f} s"
            return
        self._add_layers(outcome, job, layer)
        self.result.value = "\n".join((outcome.summary(), *outcome.warnings))
        for warning in outcome.warnings:
            show_warning(warning)

    def _show_map(self, heatmap: Image, image: Image) -> None:
        """A new map of ``image``: the only one shown, selected, at the dock's opacity."""
        heatmap.opacity = self.opacity.value
        self.maps.show(heatmap, image)

    def _add_layers(self, outcome: JobOutcome, job: ExplainJob, layer: Image) -> None:
        tiled = self.tiles.finish(outcome, job)
        for index, result in enumerate(outcome.results):
            if index not in tiled:
                heatmap = self._viewer.add_layer(Layer.create(*heatmap_layer(result, layer, job)))
                show_colorbar(heatmap)
                self._show_map(heatmap, layer)
        layers = self._viewer.layers
        if ANNOTATIONS_NAME not in layers:
            layers.append(annotations_layer(layer))
        self.maps.settle(replace=self.earlier.value == REPLACE)


def _option_control(spec: OptionSpec) -> ValueWidget:
    """The control of one method option: a list of choices, or a number.

    An optional number (``spec.none_label``) counts one below its minimum as ``None``, shown
    as the label (e.g. "auto", "mean of heads").
    """
    common = {"label": spec.label, "tooltip": spec.help, "visible": False}
    if spec.choices:
        return ComboBox(choices=spec.choices, **common)
    if spec.kind is float:
        bounds = {"min": spec.minimum, "max": spec.maximum, "step": spec.step}
        return FloatSpinBox(**{k: v for k, v in bounds.items() if v is not None}, **common)
    low = int(spec.minimum or 0) - (1 if spec.none_label else 0)
    high = int(spec.maximum) if spec.maximum is not None else MAX_COUNT - 1
    if not spec.none_label:
        return SpinBox(min=low, max=high, value=low, **common)
    # Qt's own spin box, which shows the label at its minimum (magicgui's int box cannot)
    control = FloatSpinBox(min=low, max=high, step=1, value=low, **common)
    control.native.setDecimals(0)
    control.native.setSpecialValueText(spec.none_label)
    return control


def _option_value(spec: OptionSpec, value: Any) -> Any:
    """An option's value from its control's (``None`` below an optional number's minimum)."""
    if spec.none_label and spec.kind is int:
        return None if value < (spec.minimum or 0) else int(value)
    return value


def card_of(spec: str, weights: str | None) -> ModelCard | None:
    """The model's card file, read without loading the model; None when it has none yet.

    Raises ``ValueError`` when the card exists but is not a valid model card.
    """
    path = card_location(spec, weights)
    return ModelCard.from_json(path) if path is not None and path.is_file() else None
