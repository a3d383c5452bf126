"""Autosave the annotations dock's review and offer to recover it (``napari_gradcam.autosave``).

Edits (shapes drawn, moved, removed; labels; notes) start a timer; when it fires, at most
``AUTOSAVE_MS`` after the first unsaved edit, the annotations are written atomically into the
per-user autosave folder, keyed by the image's identity. When an image whose autosave this
session did not write is open, the dock shows "Recover N annotations autosaved at HH:MM" with
Recover and Discard; until the user chooses, that image's autosave is left untouched.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import Container, Label, PushButton
from napari.layers import Image, Shapes
from napari.utils.events import Event
from qtpy.QtCore import QTimer

from napari_gradcam._napari.annotations.geojson_io import (
    ANNOTATION_KEY,
    annotations_layer_data,
    layer_annotations,
)
from napari_gradcam._napari.annotations.session_io import image_reference
from napari_gradcam._napari.records import is_gradcam_layer
from napari_gradcam.autosave import (
    Autosave,
    content_key,
    discard_autosave,
    file_key,
    read_autosave,
    sample_key,
    write_autosave,
)

if TYPE_CHECKING:
    from napari_gradcam._napari.annotations.files import AnnotationDock

AUTOSAVE_MS = 2000


def image_key(image: Image) -> str:
    """Identity of the image: its file, its sample, else a hash of its pixels."""
    path = image.source.path
    if path and Path(path).is_file():
        return file_key(path)
    if image.source.sample:
        return sample_key(*image.source.sample)
    return content_key(image.data[-1] if image.multiscale else image.data)


class AutosaveController:
    """Autosave of one annotations dock, and its recovery prompt (``self.prompt``).

    Parameters
    ----------
    dock : AnnotationDock
        The dock whose annotations layer, image and labels are saved.
    folder : Path, optional
        Autosave folder; default ``napari_gradcam.autosave.autosave_dir()``.
    """

    def __init__(self, dock: AnnotationDock, folder: Path | None = None) -> None:
        self._dock = dock
        self.folder = folder
        self.pending: Autosave | None = None
        self._followed: Shapes | None = None
        self._written: set[str] = set()
        self._answered: set[str] = set()
        self._keys: weakref.WeakKeyDictionary[Image, str] = weakref.WeakKeyDictionary()
        self.message = Label(value="")
        self.recover_button = PushButton(text="Recover")
        self.discard_button = PushButton(text="Discard")
        self.prompt = Container(
            widgets=[self.message, self.recover_button, self.discard_button],
            layout="horizontal", labels=False, visible=False,
        )  # fmt: skip
        dock.native.layout().insertWidget(0, self.prompt.native)
        self._timer = QTimer(dock.native, singleShot=True, interval=AUTOSAVE_MS)
        self._timer.timeout.connect(self.save_now)
        self.recover_button.changed.connect(self.recover)
        self.discard_button.changed.connect(self.discard)
        dock.annotations.changed.connect(self.follow)
        dock.viewer.layers.events.inserted.connect(self._on_inserted)
        dock.native.destroyed.connect(self._close)
        self.follow(dock.shapes)
        self.offer()

    @property
    def offering(self) -> bool:
        """Whether the recovery prompt is up (shown once the dock is)."""
        return not self.prompt.native.isHidden()

    def _close(self) -> None:
        self._timer.stop()
        self._dock.viewer.layers.events.inserted.disconnect(self._on_inserted)
        self.follow(None)

    def key(self, image: Image) -> str:
        """The image's autosave key (computed once per layer)."""
        if image not in self._keys:
            self._keys[image] = image_key(image)
        return self._keys[image]

    def follow(self, shapes: Shapes | None) -> None:
        """Autosave edits of ``shapes`` (None: of no layer)."""
        if self._followed is not None:
            self._followed.events.data.disconnect(self.schedule)
            self._followed.events.features.disconnect(self.schedule)
        self._followed = shapes
        if shapes is not None:
            shapes.events.data.connect(self.schedule)
            shapes.events.features.connect(self.schedule)

    def schedule(self, _event: Event | None = None) -> None:
        """Save soon: the first unsaved edit starts the timer, later ones ride along."""
        if not self._timer.isActive():
            self._timer.start()

    def save_now(self) -> Path | None:
        """Write the autosave of the annotations layer now; return its path (None: nothing)."""
        self._timer.stop()
        shapes, image = self._dock.shapes, self._dock.image_for()
        if shapes is None or image is None:
            return None
        key = self.key(image)
        if self.pending is not None and self.pending.key == key:
            return None
        self.follow(None)  # reading the features stores them back: not an edit
        try:
            annotations, _skipped = layer_annotations(shapes, image, self._dock.labels)
        finally:
            self.follow(shapes)
        autosave = Autosave(
            key, image_reference(image), annotations, self._dock.labels.as_dict(), shapes.name
        )
        self._written.add(key)
        return write_autosave(autosave, self.folder)

    def _on_inserted(self, event: Event) -> None:
        if isinstance(event.value, Image):
            self.offer()

    def offer(self) -> None:
        """Show the recovery prompt for the first open image with an autosave to recover."""
        if self.pending is not None:
            return
        images = [
            layer
            for layer in self._dock.viewer.layers
            if isinstance(layer, Image) and not is_gradcam_layer(layer)
        ]
        for image in images:
            key = self.key(image)
            if key in self._written or key in self._answered:
                continue
            found = read_autosave(key, self.folder)
            if found is not None and found.annotations:
                self.pending = found
                self.message.value = f"{found.summary()} ({image.name})"
                self.prompt.visible = True
                return

    def _answer(self) -> Autosave | None:
        pending, self.pending = self.pending, None
        self.prompt.visible = False
        if pending is not None:
            self._answered.add(pending.key)
        return pending

    def recover(self) -> Shapes | None:
        """Add the autosaved annotations as a Shapes layer over their image; return it."""
        pending = self._answer()
        image = self._image_of(pending.key) if pending else None
        if pending is None or image is None:
            return None
        for name, colour in pending.labels.items():
            self._dock.labels.add(name, colour)
        data, kwargs, _kind = annotations_layer_data(
            pending.annotations, image, pending.annotations_name
        )
        kwargs["metadata"][ANNOTATION_KEY]["labels"] = self._dock.labels.as_dict()
        shapes = Shapes(data, **kwargs)
        self._dock.viewer.add_layer(shapes)
        self._dock.annotations.value = shapes
        self.save_now()
        self.offer()
        return shapes

    def discard(self) -> None:
        """Delete the offered autosave."""
        pending = self._answer()
        if pending is not None:
            discard_autosave(pending.key, self.folder)
        self.offer()

    def _image_of(self, key: str) -> Image | None:
        for layer in self._dock.viewer.layers:
            if isinstance(layer, Image) and not is_gradcam_layer(layer) and self.key(layer) == key:
                return layer
        return None
