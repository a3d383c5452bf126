"""The "Slide similarity (prompt, like a region)" dock: controls and wiring (work in job.py).

Pick a slide layer and a model that returns image embeddings, then type a prompt (a
vision-language model; ``;`` between the prompts of an ensemble) or pick a shape ("find tissue
like this region", any encoder) and **Run**: each tissue tile's similarity becomes a tile map
over the slide, named after the prompt. The table lists the most similar tiles; selecting a
row centres the view on it and draws its Grad-CAM for the same target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Shapes
from napari.utils.notifications import show_error
from napari.viewer import Viewer
from qtpy.QtCore import Qt

from napari_gradcam._napari.explain.tiled_review import jump_to_box
from napari_gradcam._napari.gl_guard import guard_layer_removal
from napari_gradcam._napari.heatmap_style import show_colorbar_soon
from napari_gradcam._napari.jobs import FAILED, JobHooks, JobRunner
from napari_gradcam._napari.mil.layers import tile_centre
from napari_gradcam._napari.mil.source import slide_source
from napari_gradcam._napari.mil.table import TopTile, TopTilesTable
from napari_gradcam._napari.records import slide_choices
from napari_gradcam._napari.similarity.job import (
    TOP,
    SimilarityOutcome,
    SimilarityRequest,
    run_similarity,
    run_similarity_drill,
)
from napari_gradcam._napari.similarity.layers import (
    map_name,
    similarity_drill_layer,
    similarity_drill_name,
    similarity_layer,
)

if TYPE_CHECKING:
    from napari_gradcam._napari.mil.job import DrillOutcome
    from napari_gradcam.slides.similarity_map import SimilarityMap

NAME = "Slide similarity (prompt, like a region)"
PROMPT, REGION = "prompt", "like a shape"


class SlideSimilarityWidget(Container):
    """Map each tissue tile's similarity to a prompt or a region over a slide image layer.

    napari passes the viewer by the name ``napari_viewer``; ``cache_dir`` is the embedding
    cache's folder (default: ``slides.embedding_cache``'s).
    """

    def __init__(self, napari_viewer: Viewer, cache_dir: str | None = None) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._cache_dir = cache_dir
        guard_layer_removal(napari_viewer)
        self.result: SimilarityMap | None = None
        self._image: Image | None = None
        self.image = ComboBox(label="slide", choices=self._image_choices)
        self.image.tooltip = "the whole-slide image layer"
        self.model = LineEdit(label="model", value="demo-vlm")
        self.model.tooltip = "a model that returns image embeddings (demo-vlm: the bundled demo)"
        self.target = ComboBox(label="compare with", choices=(PROMPT, REGION))
        self.target.tooltip = "a text prompt (vision-language model) or a shape's region"
        self.prompt = LineEdit(label="prompt", value="")
        self.prompt.tooltip = "what to look for, e.g. nuclei-dense tissue; ';' between prompts"
        self.template = LineEdit(label="template", value="")
        self.template.tooltip = "prompt template, e.g. 'an H&E image of {}.' (default: the card's)"
        self.shapes = ComboBox(label="shapes", choices=self._shape_choices, visible=False)
        self.shapes.tooltip = "the selected shape (else the last one) is the region to match"
        self.overlap = FloatSpinBox(label="overlap", min=0.0, max=0.75, step=0.25, value=0.0)
        self.top_k = SpinBox(label="top tiles", min=1, max=100, value=8)
        self.run_button = PushButton(text="Run", tooltip="embed the tiles and map the similarity")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="")
        self.status.native.setWordWrap(True)
        self.status.native.setTextFormat(Qt.TextFormat.PlainText)
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
                self.model,
                self.target,
                self.prompt,
                self.template,
                self.shapes,
                self.overlap,
                self.top_k,
                Container(
                    widgets=[self.run_button, self.cancel_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.progress,
                self.status,
            ]
        )
        self.native.layout().addWidget(self.table, 100)
        self._connect()

    def _connect(self) -> None:
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.runner.cancel)
        self.target.changed.connect(self._on_target)
        events = self._viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.image.reset_choices)
            event.connect(self.shapes.reset_choices)
        events.removed.connect(self._on_layer_removed)

    def _image_choices(self, _widget: ComboBox) -> list[tuple[str, Image]]:
        return slide_choices(self._viewer.layers)

    def _shape_choices(self, _widget: ComboBox) -> list[tuple[str, Shapes]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Shapes)]

    def _on_target(self, choice: str) -> None:
        prompt = choice == PROMPT
        self.prompt.visible = self.template.visible = prompt
        self.shapes.visible = not prompt

    @property
    def running(self) -> bool:
        """Whether a run or a drill-down is under way."""
        return self.runner.running

    def run(self) -> None:
        """Map the chosen slide's similarity to the prompt or shape, in a worker thread."""
        if self.running:
            return
        try:
            request, image = self._request()
        except ValueError as err:
            show_error(f"{NAME}: {err}")
            return
        hooks = JobHooks(returned=lambda outcome: self._on_result(outcome, request, image))
        self.runner.start(run_similarity, request, hooks=hooks)

    def _request(self) -> tuple[SimilarityRequest, Image]:
        image = self.image.value
        if image is None:
            raise ValueError("open a whole slide first (File > Open, with napari-gradcam)")
        spec = self.model.value.strip()
        if not spec:
            raise ValueError("name a model that returns image embeddings")
        common = {
            "spec": spec,
            "source": slide_source(image),
            "overlap": float(self.overlap.value),
            "cache_dir": self._cache_dir,
        }
        if self.target.value == PROMPT:
            prompts = tuple(p.strip() for p in self.prompt.value.split(";") if p.strip())
            if not prompts:
                raise ValueError("type a prompt, e.g. nuclei-dense tissue")
            template = self.template.value.strip() or None
            return SimilarityRequest(**common, prompts=prompts, template=template), image
        shapes = self.shapes.value
        box, label = shape_box(shapes, image)
        return SimilarityRequest(**common, region=box, region_label=label), image

    def _on_result(
        self, outcome: SimilarityOutcome, request: SimilarityRequest, image: Image
    ) -> None:
        if outcome.error is not None:
            self.status.value = f"{FAILED}: {outcome.error}"
            show_error(f"{NAME}: {outcome.error}")
            return
        if image not in self._viewer.layers:
            return
        self.progress.value = self.progress.max
        result = outcome.result
        self.result, self._image = result, image
        name = map_name(image, result.label)
        if name in self._viewer.layers:
            self._viewer.layers.remove(name)
        layer = self._viewer.add_layer(similarity_layer(result, image, request.spec))
        show_colorbar_soon(layer)
        self.status.value = result.summary()
        boxes = result.tiles.boxes
        rows = [
            TopTile(TOP, index, float(result.scores[index]), tile_centre(image, boxes[index]))
            for index in result.top(int(self.top_k.value))
        ]
        self.table.show_tiles(rows, str(image.units[-1]))

    def drill(self, row: TopTile) -> None:
        """Jump to a table row's tile and draw its Grad-CAM for the target (in a worker)."""
        image, result = self._image, self.result
        if result is None or image is None or image not in self._viewer.layers:
            return
        jump_to_box(self._viewer, image, result.tiles.boxes[row.tile])
        name = similarity_drill_name(image, result.label, row.tile)
        if name in self._viewer.layers:
            self._viewer.layers.selection.active = self._viewer.layers[name]
            return
        if self.running:
            self.status.value = "busy: select the row again when the current job has ended"
            return
        hooks = JobHooks(returned=lambda outcome: self._on_drill(outcome, image))
        self.runner.start(run_similarity_drill, result, row.tile, hooks=hooks)

    def _on_drill(self, outcome: DrillOutcome, image: Image) -> None:
        if outcome.error is not None:
            self.status.value = f"{FAILED}: {outcome.error}"
            show_error(f"{NAME}: drill-down of tile {outcome.tile}: {outcome.error}")
            return
        if image not in self._viewer.layers:
            return
        self.progress.value = self.progress.max
        self._viewer.add_layer(similarity_drill_layer(outcome, image))
        self.status.value = f"drill-down of tile {outcome.tile} added"

    def _set_running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    def _on_layer_removed(self, event: Any) -> None:
        if self.running and event.value is self._image:
            self.runner.halt(f"the layer {event.value.name!r} was removed")
        if event.value is self._image:
            self.result, self._image = None, None
            self.table.show_tiles([], "")


def shape_box(shapes: Shapes | None, image: Image) -> tuple[tuple[float, ...], str]:
    """The level-0 box ``(y0, x0, y1, x1)`` of ``image`` around a shape, and its label.

    The selected shape of ``shapes``, else its last one; the vertices go through world
    coordinates, so any scale or translate of either layer is honoured.
    """
    if shapes is None or len(shapes.data) == 0:
        raise ValueError("draw a shape around the region to find (a Shapes layer)")
    selected = sorted(shapes.selected_data)
    index = selected[0] if selected else len(shapes.data) - 1
    vertices = np.asarray(shapes.data[index], dtype=float)
    corners = []
    for vertex in vertices:
        world = shapes.data_to_world(vertex)
        point = np.zeros(image.ndim)
        point[-2:] = np.asarray(world)[-2:]
        corners.append(np.asarray(image.world_to_data(point))[-2:])
    corners = np.asarray(corners)
    low = np.maximum(corners.min(axis=0) + 0.5, 0.0)  # pixel centres to pixel edges
    high = corners.max(axis=0) + 0.5
    box = (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
    return box, f"{shapes.name} shape {index}"
