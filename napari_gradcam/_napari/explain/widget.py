"""The "Grad-CAM" dock widget: controls and wiring only (the work is in worker.py)."""

from typing import Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)
from napari.layers import Image, Layer, Shapes
from napari.utils.notifications import show_error
from napari.viewer import Viewer

from napari_gradcam._napari.explain.tiled_job import TiledUpdate
from napari_gradcam._napari.explain.tiled_review import TiledReview
from napari_gradcam._napari.gl_guard import guard_layer_removal
from napari_gradcam._napari.jobs import FAILED, JobHooks, JobRunner
from napari_gradcam._napari.layers import ANNOTATIONS_NAME, annotations_layer, heatmap_layer
from napari_gradcam._napari.plane import current_plane
from napari_gradcam._napari.progress import ModelInfo, ModelReady
from napari_gradcam._napari.records import is_gradcam_layer
from napari_gradcam._napari.regions import RECTANGLES, REGION_CHOICES, region_boxes
from napari_gradcam._napari.worker import ExplainJob, JobOutcome, run_job
from napari_gradcam.core.explain.method_options import MethodOptions
from napari_gradcam.core.explain.methods import METHODS

LAYER_TIP = (
    "module whose output is explained, with its map grid; auto: the last spatial layer of a "
    "CNN, or a transformer's last layer whose patch tokens reach the output"
)
TARGET_TIP = "class to explain; predicted: the top class of each region"
REGION_TIP = (
    "whole layer: the current 2-D plane; selected rectangles: one heatmap per selected "
    "rectangle (all rectangles if none is selected); field of view: what the canvas shows"
)
TTA_TIP = (
    "test-time augmentation: explain the region and its horizontal, vertical and double "
    "flips, flip the maps back and average them (smoother maps, 4x the work)"
)
BFLOAT16_TIP = (
    "run the masked forwards on a bfloat16 copy of the model: about 2x faster on CPUs with "
    "AVX-512 BF16 or AMX and on GPUs; scores keep ~3 digits, so the map is close to, not "
    "equal to, the float32 one"
)
DISCARD_TIP = (
    "attention rollout: the share of each row's weakest attention weights dropped in every "
    "block before the product; 0 is the paper's rollout, higher values sharpen the map"
)
HEAD_TIP = (
    "class-token attention: the map of one head of the last block, or the mean of its heads "
    "(as in the DINO figures)"
)
MEAN_OF_HEADS = "mean of heads"
MAX_HEADS = 16
"""Heads offered while the model's count is unknown (``explain`` refuses a head too many)."""
AUTO_LAYER = "auto"
PREDICTED = "predicted"
MODEL_TIP = (
    "'demo' or 'demo-vit' (bundled models), 'package.module:factory', 'path/file.py:factory' "
    "or a TorchScript file 'model.pt'"
)
BUNDLED_MODELS = ("demo", "demo-vit")
"""Specs of the bundled demo models (``models.loading.BUNDLED``; named here to keep torch out
of napari's start-up)."""
OWN_MODEL = "your own (below)"
BUNDLED_TIP = "demo: the small CNN; demo-vit: the small Vision Transformer; or your own model"


class GradCamWidget(Container):
    """Explain an image layer with a classifier and add the Grad-CAM heatmap as a layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are explained (napari passes it by this name).
    """

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        guard_layer_removal(napari_viewer)
        self._running_on: Image | None = None
        self._model_info: ModelInfo | None = None
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.bundled = ComboBox(
            label="bundled model", choices=(*BUNDLED_MODELS, OWN_MODEL), tooltip=BUNDLED_TIP
        )
        self.model = FileEdit(label="model", mode="r", tooltip=MODEL_TIP)
        self.model.line_edit.value = "demo"
        self.weights = FileEdit(
            label="weights", mode="r", nullable=True, tooltip="optional state dict for a factory"
        )
        self.load_button = PushButton(text="Load model", tooltip="list its layers and classes")
        self.layer = ComboBox(
            label="Grad-CAM layer", choices=self._layer_choices, tooltip=LAYER_TIP
        )
        self._build_method_controls()
        self.target = ComboBox(label="target", choices=self._target_choices, tooltip=TARGET_TIP)
        self.region = ComboBox(label="region", choices=REGION_CHOICES, tooltip=REGION_TIP)
        self.shapes = ComboBox(label="rectangles in", choices=self._shapes_choices)
        self.explain_button = PushButton(text="Explain")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.result = Label(label="result", value="")
        self.result.native.setWordWrap(True)
        self.result.native.setMinimumHeight(3 * self.result.native.fontMetrics().lineSpacing())
        self.tiles = TiledReview(napari_viewer)
        self.runner = JobRunner(
            self.native, "Grad-CAM", progress=self.progress, status=self.result,
            on_running=self._set_running,
        )  # fmt: skip
        self.extend([
            self.image, self.bundled, self.model, self.weights, self.load_button, self.layer,
            self.method, self.discard_ratio, self.attention_head, self.tta, self.bfloat16,
            self.target, self.region, self.shapes,
            *self.tiles.controls,
            self.explain_button, self.cancel_button, self.progress, self.result,
        ])  # fmt: skip
        self.native.layout().addWidget(self.tiles.table, 100)
        self.native.layout().addWidget(self.tiles.export.native)
        self.native.layout().addStretch(1)
        self._connect()
        self._on_region_changed(self.region.value)
        self._on_method_changed(self.method.value)

    def _build_method_controls(self) -> None:
        """The method, its own options (shown only for it) and how it runs."""
        self.method = ComboBox(label="method", choices=tuple(METHODS), value="gradcam")
        self.discard_ratio = FloatSpinBox(
            label="discard ratio", min=0.0, max=0.95, step=0.05, value=0.0, tooltip=DISCARD_TIP
        )
        self.attention_head = ComboBox(
            label="attention head", choices=self._head_choices, tooltip=HEAD_TIP
        )
        self.tta = CheckBox(text="average over flips (TTA)", value=False, tooltip=TTA_TIP)
        self.bfloat16 = CheckBox(
            text="bfloat16 forwards (faster, approximate)", value=False, tooltip=BFLOAT16_TIP
        )

    def _connect(self) -> None:
        self.explain_button.changed.connect(self.explain)
        self.load_button.changed.connect(self.load_model)
        self.cancel_button.changed.connect(self.cancel)
        self.model.changed.connect(self._forget_model)
        self.bundled.changed.connect(self._on_bundled_changed)
        self.weights.changed.connect(self._forget_model)
        self.region.changed.connect(self._on_region_changed)
        self.method.changed.connect(self._on_method_changed)
        layer_events = self._viewer.layers.events
        for event in (layer_events.inserted, layer_events.removed, layer_events.reordered):
            event.connect(self.reset_choices)
        layer_events.removed.connect(self._on_layer_removed)

    def _layer_choices(self, _widget: ComboBox) -> list[tuple[str, str]]:
        """Auto, then each layer labelled with its grid, e.g. "blocks.11.norm1 (tokens 14x14)"."""
        layers = self._model_info.layers if self._model_info else ()
        return [(AUTO_LAYER, AUTO_LAYER), *layers]

    def _head_choices(self, _widget: ComboBox) -> list[tuple[str, int]]:
        """The mean of the heads (-1), then each head of the model's last attention block."""
        heads = (self._model_info.heads if self._model_info else None) or MAX_HEADS
        return [(MEAN_OF_HEADS, -1), *((str(head), head) for head in range(heads))]

    def _target_choices(self, _widget: ComboBox) -> tuple[str, ...]:
        classes = self._model_info.classes if self._model_info else ()
        return (PREDICTED, *classes)

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
            show_error(f"Grad-CAM: {err}")
            return
        self._start(job, layer)

    def load_model(self) -> None:
        """Load the model in a background thread to list its layers and classes."""
        if self.running:
            return
        if not self.model_spec:
            show_error(f"Grad-CAM: enter a model: {MODEL_TIP}")
            return
        self._start(self._model_job(), None)

    def cancel(self) -> None:
        """Ask the running job to stop after its current step (or batch of tiles)."""
        self.runner.cancel()

    def _model_job(self, **kwargs: Any) -> ExplainJob:
        weights = self.weights.value
        return ExplainJob(self.model_spec, str(weights) if weights else None, **kwargs)

    def _explain_job(self) -> tuple[ExplainJob, Image]:
        layer = self.image.value
        if layer is None:
            raise ValueError("add an image layer first (File > Open Sample > napari-gradcam)")
        if not self.model_spec:
            raise ValueError(f"enter a model: {MODEL_TIP}")
        plane = current_plane(layer, self._viewer.dims.point)
        boxes = region_boxes(self._viewer, layer, plane.shape, self.region.value, self.shapes.value)
        job = self._model_job(
            method=self.method.value,
            layer=None if self.layer.value == AUTO_LAYER else self.layer.value,
            target=None if self.target.value == PREDICTED else self.target.value,
            tta=self.tta.value,
            bfloat16=self.bfloat16.value and METHODS[self.method.value].runs_in_bfloat16,
            options=self.method_options(),
            plane=plane,
            boxes=boxes,
            tiling=self.tiles.options(),
            tissue=self.tiles.cached_tissue(layer, plane),
        )
        return job, layer

    def _start(self, job: ExplainJob, layer: Image | None) -> None:
        hooks = JobHooks(
            returned=lambda outcome: self._on_returned(outcome, job, layer),
            event=self._on_event,
            stopped=lambda _how: self.tiles.discard(),
        )
        self._running_on = layer
        if layer is not None:
            self.tiles.start(job, layer)
        self.runner.start(run_job, job, hooks=hooks)

    def _set_running(self, running: bool) -> None:
        self.explain_button.enabled = self.load_button.enabled = not running
        self.cancel_button.enabled = running

    def _on_layer_removed(self, event: Any) -> None:
        if self.running and event.value is self._running_on:
            self.runner.halt(f"the layer {event.value.name!r} was removed")

    def _on_event(self, event: Any) -> None:
        if isinstance(event, ModelReady):
            self.show_model_info(event.model)
        elif isinstance(event, TiledUpdate) and not self.tiles.apply(event):
            self.runner.halt("the heatmap layer was closed")

    def show_model_info(self, info: ModelInfo) -> None:
        """Offer the layers and classes of a loaded model, if it is the one in the fields."""
        if (info.spec, info.weights) == (self.model_spec, self._model_job().weights):
            self._model_info = info
            self.layer.reset_choices()
            self.target.reset_choices()
            self.attention_head.reset_choices()

    def _on_bundled_changed(self, choice: str) -> None:
        if choice != OWN_MODEL:
            self.weights.value = None  # they were the previous model's, not this one's
            self.model_spec = choice

    def _forget_model(self) -> None:
        self.bundled.value = self.model_spec if self.model_spec in BUNDLED_MODELS else OWN_MODEL
        self._model_info = None
        self.layer.reset_choices()
        self.target.reset_choices()
        self.attention_head.reset_choices()

    def _on_region_changed(self, region: str) -> None:
        self.shapes.visible = region == RECTANGLES

    def _on_method_changed(self, method: str) -> None:
        found = METHODS[method]
        self.bfloat16.visible = found.runs_in_bfloat16
        self.discard_ratio.visible = "discard_ratio" in found.options
        self.attention_head.visible = "attention_head" in found.options

    def method_options(self) -> MethodOptions:
        """The chosen method's own options (those it does not take stay at their defaults)."""
        head = self.attention_head.value
        options = MethodOptions(float(self.discard_ratio.value), None if head < 0 else head)
        return options.for_method(self.method.value)

    def _on_returned(self, outcome: JobOutcome, job: ExplainJob, layer: Image | None) -> None:
        if outcome.error is not None:
            self.tiles.discard()
            self.result.value = FAILED
            show_error(f"Grad-CAM: {outcome.error}")
            return
        if layer is None or not outcome.results:
            self.result.value = f"model loaded in {outcome.seconds:.1f} s"
            return
        self._add_layers(outcome, job, layer)
        self.result.value = outcome.summary()

    def _add_layers(self, outcome: JobOutcome, job: ExplainJob, layer: Image) -> None:
        tiled = self.tiles.finish(outcome, job)
        for index, result in enumerate(outcome.results):
            if index not in tiled:
                self._viewer.add_layer(Layer.create(*heatmap_layer(result, layer, job)))
        layers = self._viewer.layers
        if ANNOTATIONS_NAME not in layers:
            layers.append(annotations_layer(layer))
        annotations = layers[ANNOTATIONS_NAME]
        layers.move(layers.index(annotations), len(layers))
        layers.selection.active = annotations
