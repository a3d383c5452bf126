"""One visible answer per image: a new heatmap hides (or replaces) the earlier ones.

Earlier maps of the same image stay in the layer list, hidden, for comparison; with
"replace" they are removed, but only once the new map is complete, so a cancelled or failed
run loses nothing and shows the earlier map again. The newest map is selected, so napari's
layer controls show its opacity and colormap. Runs on the main thread.

Layers are compared with ``==``, never ``is``: napari hands a plugin's dock a proxy of the
viewer, whose layers come back as new proxies of the same layer at every access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_gradcam._napari.layers import ANNOTATIONS_NAME
from napari_gradcam._napari.records import HeatmapRecord

if TYPE_CHECKING:
    from napari.layers import Image, Layer
    from napari.viewer import Viewer

HIDE, REPLACE = "hide", "replace"
EARLIER_CHOICES = (HIDE, REPLACE)


def is_map_of(layer: Layer, image: Image) -> bool:
    """Whether ``layer`` is a finished heatmap of ``image`` (by the image's name)."""
    record = HeatmapRecord.of(layer)
    return record is not None and record.image_layer == image.name


class MapStack:
    """The heatmaps one dock adds to a viewer, newest on top and the only one visible.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer holding the maps.
    """

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.newest: Image | None = None
        self._hidden: list[Layer] = []
        self._added: list[Image] = []

    def show(self, layer: Image, image: Image) -> None:
        """``layer`` (just added) is the answer: hide the other maps of ``image``, select it."""
        for other in self.viewer.layers:
            if other != layer and other.visible and self._is_earlier(other, image):
                other.visible = False
                self._hidden.append(other)
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
                if layer in self.viewer.layers:
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

    def _is_earlier(self, layer: Layer, image: Image) -> bool:
        """A finished map of ``image`` made before this run."""
        return layer not in self._added and is_map_of(layer, image)
