"""One visible answer per image: a new heatmap hides (or replaces) the earlier ones.

An answer is a Grad-CAM heatmap or a slide-level model's map of the image: a new one of
either kind hides the visible ones of both. "Replace" removes earlier Grad-CAM heatmaps only.

Earlier maps of the same image stay in the layer list, hidden, for comparison; with
"replace" they are removed, but only once the new map is complete, so a cancelled or failed
run loses nothing and shows the earlier map again. The newest map is selected, so napari's
layer controls show its opacity and colormap. Runs on the main thread.

Layers are compared with ``==``, never ``is``: napari hands a plugin's dock a proxy of the
viewer, whose layers come back as new proxies of the same layer at every access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.result_layers import ANNOTATIONS_NAME, METADATA_KEY

if TYPE_CHECKING:
    from napari.layers import Image, Layer
    from napari.viewer import Viewer

HIDE, REPLACE = "hide", "replace"
EARLIER_CHOICES = (HIDE, REPLACE)


def is_map_of(layer: Layer, image: Image) -> bool:
    """Whether ``layer`` is a finished heatmap of ``image`` (by the image's name)."""
    record = HeatmapRecord.of(layer)
    return record is not None and record.image_layer == image.name


def is_answer_of(layer: Layer, image: Image) -> bool:
    """Whether ``layer`` is a heatmap or a slide-level model's map of ``image``."""
    if is_map_of(layer, image):
        return True
    facts = layer.metadata.get(METADATA_KEY)
    slide_map = facts.get("mil") if isinstance(facts, dict) else None
    return isinstance(slide_map, dict) and slide_map.get("image_layer") == image.name


def hide_answers(viewer: Viewer, image: Image, keep: list[Layer]) -> list[Layer]:
    """Hide the visible answers of ``image`` other than ``keep``; return those hidden."""
    hidden = []
    for layer in viewer.layers:
        if layer.visible and layer not in keep and is_answer_of(layer, image):
            layer.visible = False
            hidden.append(layer)
    return hidden


class MapStack:
    """The heatmaps one dock adds to a viewer, newest on top and the only one visible."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.newest: Image | None = None
        self._hidden: list[Layer] = []
        self._added: list[Image] = []

    def show(self, layer: Image, image: Image) -> None:
        """``layer`` (just added) is the answer: hide the other maps of ``image``, select it."""
        self._hidden += hide_answers(self.viewer, image, keep=[layer, *self._added])
        self._added.append(layer)
        self.newest = layer
        self.select(layer)

    def select(self, layer: Image) -> None:
        """Make ``layer`` the selected layer, keeping the annotations layer on top."""
        layers = self.viewer.layers
        if ANNOTATIONS_NAME in layers:
            layers.move(layers.index(layers[ANNOTATIONS_NAME]), len(layers))
        if layer in layers:
            layers.selection.active = layer

    def settle(self, replace: bool) -> None:
        """The run is complete: remove the maps it hid when ``replace``; forget them."""
        if replace:
            for layer in self._hidden:
                if layer in self.viewer.layers and HeatmapRecord.of(layer) is not None:
                    self.viewer.layers.remove(layer)
        if self.newest is not None:
            self.select(self.newest)
        self._hidden, self._added = [], []

    def restore(self) -> None:
        """The run failed or was cancelled: show again the maps it hid."""
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        alive = [layer for layer in self._hidden if layer in self.viewer.layers]
        self.newest = alive[-1] if alive else None
        self._hidden, self._added = [], []
