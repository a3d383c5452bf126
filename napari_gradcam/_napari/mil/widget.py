"""The "Slide-level model (MIL)" dock: controls and wiring (the work is in job.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton
from napari.layers import Image
from napari.utils.notifications import show_error
from napari.viewer import Viewer
from qtpy.QtCore import Qt, QTimer

from napari_gradcam._napari.explain.map_stack import hide_answers
from napari_gradcam._napari.explain.tiled_review import jump_to_box
from napari_gradcam._napari.fold import Fold
from napari_gradcam._napari.gl_guard import guard_layer_removal
from napari_gradcam._napari.jobs import FAILED, JobHooks, JobRunner
from napari_gradcam._napari.mil.controls import ATTENTION, MilControls
from napari_gradcam._napari.mil.job import (
    DrillOutcome,
    MilOutcome,
    MilRequest,
    run_drill,
    run_mil,
)
from napari_gradcam._napari.mil.layers import (
    LABELS,
    drill_layer,
    drill_name,
    legend_html,
    score_layer,
    tile_centre,
)
from napari_gradcam._napari.mil.source import slide_source
from napari_gradcam._napari.mil.table import TopTile, TopTilesTable
from napari_gradcam._napari.records import METADATA_KEY, slide_choices

if TYPE_CHECKING:
    from napari_gradcam.slides.mil_runner import MilResult, ScoreMap

NAME = "Slide-level model (MIL)"
MAP_DELAY_MS = 30
"""Pause between adding a run's maps, so the window redraws and takes input in between."""
SHOWN_TIP = (
    "the one tile map shown over the slide; the others stay in the layer list, hidden "
    "(tick their eye to compare)"
)


class SlideMilWidget(Container):
    """Explain a slide-level (multiple-instance) prediction over a slide image layer.

    napari passes the viewer by the name ``napari_viewer``; ``cache_dir`` is the embedding
    cache's folder (default: ``slides.embedding_cache``'s).
    """

    def __init__(self, napari_viewer: Viewer, cache_dir: str | None = None) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._cache_dir = cache_dir
        guard_layer_removal(napari_viewer)
        self.result: MilResult | None = None
        self._image: Image | None = None
        self._running_on: Image | None = None
        self._maps: dict[str, Image] = {}
        self._pending: list[tuple[str, ScoreMap]] = []
        self.image = ComboBox(
            label="slide", choices=self._image_choices, tooltip="the whole-slide image layer"
        )
        self.controls = MilControls()
        self.advanced = Fold("advanced options", self.controls.advanced)
        self.run_button = PushButton(
            text="Run", tooltip="embed the slide's tissue tiles, predict and map the scores"
        )
        self.cancel_button = PushButton(
            text="Cancel", enabled=False, tooltip="stop the job; nothing it made is added"
        )
        self.progress = ProgressBar(
            label="progress", min=0, max=1, value=0, tooltip="progress of the running job"
        )
        self.status = Label(label="status", value="")
        self.prediction = Label(label="prediction", value="")
        self.shown = ComboBox(
            label="map shown", choices=self._map_choices, tooltip=SHOWN_TIP, visible=False
        )
        self.legend = Label(label="colours", value="", visible=False)
        for label in (self.status, self.prediction, self.legend):
            label.native.setWordWrap(True)
        self.status.native.setTextFormat(Qt.TextFormat.PlainText)  # errors shown as written
        self.prediction.native.setTextFormat(Qt.TextFormat.PlainText)
        self.table = TopTilesTable(self.drill)
        self.runner = JobRunner(
            self.native,
            NAME,
            progress=self.progress,
            status=self.status,
            on_running=self._set_running,
        )
        self.extend(
            [
                self.image,
                *self.controls.widgets,
                self.advanced,
                Container(
                    widgets=[self.run_button, self.cancel_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.progress,
                self.status,
                self.prediction,
                self.shown,
                self.legend,
            ]
        )
        self.native.layout().addWidget(self.table, 100)
        self._connect()

    def _connect(self) -> None:
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.runner.cancel)
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.image.reset_choices)
        events.removed.connect(self._on_layer_removed)
        self.shown.changed.connect(self._show_map)

    def _image_choices(self, _widget: ComboBox) -> list[tuple[str, Image]]:
        return slide_choices(self._viewer.layers)

    def _map_choices(self, _widget: ComboBox) -> list[tuple[str, str]]:
        return [
            (label, label) for label, layer in self._maps.items() if layer in self._viewer.layers
        ]

    def _show_map(self, label: str | None) -> None:
        """Show the map ``label`` alone (the run's other maps are hidden, not removed)."""
        chosen = self._maps.get(label) if label else None
        for layer in self._maps.values():
            layer.visible = layer is chosen
        self.legend.visible = chosen is not None
        if chosen is not None:
            facts = chosen.metadata[METADATA_KEY]["mil"]
            self.legend.value = legend_html(facts["score"], facts["signed"], facts["target_name"])

    @property
    def running(self) -> bool:
        """Whether a run or a drill-down is under way (or a run's maps are still being added)."""
        return self.runner.running or bool(self._pending)

    def run(self) -> None:
        """Embed, score and map the chosen slide with the chosen card, in a worker thread."""
        if self.running:
            return
        try:
            request, image = self._request()
        except ValueError as err:
            show_error(f"{NAME}: {err}")
            return
        hooks = JobHooks(returned=lambda outcome: self._on_result(outcome, request, image))
        self._running_on = image
        self.runner.start(run_mil, request, hooks=hooks)

    def _request(self) -> tuple[MilRequest, Image]:
        image = self.image.value
        if image is None:
            raise ValueError("open a whole slide first (File > Open, with napari-gradcam)")
        if not self.controls.card_path:
            raise ValueError("choose a slide-model card (.json), or the bundled demo")
        scores = self.controls.scores()
        if not scores:
            raise ValueError("tick at least one score to draw")
        return MilRequest(
            self.controls.options(self._cache_dir), slide_source(image), scores
        ), image

    def _on_result(self, outcome: MilOutcome, request: MilRequest, image: Image) -> None:
        if outcome.error is not None:
            self.status.value = f"{FAILED}: {outcome.error}"
            show_error(f"{NAME}: {outcome.error}")
            return
        self.progress.value = self.progress.max  # done, whatever the last step said
        result = outcome.result
        card = str(request.options["card"])
        self._maps = {}
        hide_answers(self._viewer, image, keep=[])  # the slide model's map is now the answer
        self.result, self._image = result, image
        self.status.value = result.summary()
        self.prediction.value = result.prediction()
        self.table.show_tiles(self._top_tiles(result, image), str(image.units[-1]))
        self.shown.visible = True
        labelled = {map_label(s.name, s.signed, result.target_name): s for s in result.maps}
        first = self._first_shown(result)
        self._pending = [(first, labelled.pop(first)), *labelled.items()]
        self._add_next_map(result, image, card)

    def _add_next_map(self, result: MilResult, image: Image, card: str) -> None:
        """Add one pending map (the one shown first), then the next at the next turn.

        Adding a layer builds its controls on the GUI thread (about half a second each):
        one per turn of the event loop keeps the window responsive.
        """
        if self.result is not result or image not in self._viewer.layers or not self._pending:
            self._pending = []
            return
        label, score = self._pending.pop(0)
        layer = score_layer(score, result, image, card)
        layer.visible = not self._maps
        self._maps[label] = self._viewer.add_layer(layer)
        self.shown.reset_choices()
        if len(self._maps) == 1:
            self.shown.value = label
            self._show_map(label)
        shown = self._maps.get(self.shown.value)
        if shown is not None:  # napari selects each layer added: keep the shown map selected
            self._viewer.layers.selection.active = shown
        if self._pending:
            QTimer.singleShot(MAP_DELAY_MS, lambda: self._add_next_map(result, image, card))

    def _first_shown(self, result: MilResult) -> str:
        """The map of the score the table ranks by, else the first map made."""
        rank_by = self.controls.rank_by.value
        shown = next((s for s in result.maps if s.name == rank_by), result.maps[0])
        return map_label(shown.name, shown.signed, result.target_name)

    def _top_tiles(self, result: MilResult, image: Image) -> list[TopTile]:
        from napari_gradcam.slides.mil_runner import top_tiles

        rank_by = self.controls.rank_by.value
        if rank_by not in result.scores.scores:
            show_error(f"{NAME}: the card has no attention module; the table ranks by gradient")
            rank_by = "grad_x_embedding"
        values = result.scores.scores[rank_by]
        picks = top_tiles(values, int(self.controls.top_k.value), rank_by != ATTENTION)
        boxes = result.tiles.boxes
        return [
            TopTile(side, index, float(values[index]), tile_centre(image, boxes[index]))
            for side, index in picks
        ]

    def drill(self, row: TopTile) -> None:
        """Jump to a table row's tile and draw its drill-down map (computed in a worker)."""
        image, result = self._image, self.result
        if result is None or image is None or image not in self._viewer.layers:
            return
        jump_to_box(self._viewer, image, result.tiles.boxes[row.tile])
        name = drill_name(image, row.tile, row.side)
        if name in self._viewer.layers:
            self._viewer.layers.selection.active = self._viewer.layers[name]
            return
        if self.running:
            self.status.value = "busy: select the row again when the current job has ended"
            return
        hooks = JobHooks(returned=lambda outcome: self._on_drill(outcome, image))
        self.runner.start(run_drill, result, row.tile, row.side, hooks=hooks)

    def _on_drill(self, outcome: DrillOutcome, image: Image) -> None:
        if outcome.error is not None:
            self.status.value = f"{FAILED}: {outcome.error}"
            show_error(f"{NAME}: drill-down of tile {outcome.tile}: {outcome.error}")
            return
        self.progress.value = self.progress.max
        self._viewer.add_layer(drill_layer(outcome, image))
        self.status.value = f"drill-down of tile {outcome.tile} ({outcome.side}) added"

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    def _on_layer_removed(self, event: Any) -> None:
        if self.running and event.value in (self._running_on, self._image):
            self.runner.halt(f"the layer {event.value.name!r} was removed")
        if event.value is self._image:
            self.result, self._image = None, None
            self.prediction.value = ""
            self.table.show_tiles([], "")
        self.shown.reset_choices()


def map_label(score: str, signed: bool, target: str) -> str:
    """The selector's name of a score map, e.g. ``"tile score: for / against positive"``."""
    if not signed:
        return "attention (where the model looked)"
    return f"tile score, {LABELS.get(score, score)}: for / against {target}"
