"""Autosave the annotations dock's review and offer to recover it (see ``review.autosave``).

Edits (shapes drawn, moved, removed; labels; notes) start a timer; when it fires, at most
``AUTOSAVE_MS`` after the first unsaved edit, the annotations are written atomically into the
per-user autosave folder, keyed by the image's identity. When an image whose autosave this
session did not write is open, the dock shows "Recover N annotations autosaved at HH:MM" with
Recover and Discard; until the user chooses, that image's autosave is left untouched.

Nothing autosaved is lost without a word: an autosave that cannot be read whole is renamed
beside itself and the dock names the file; one read in part is offered as "N of M" and, once
answered, kept aside as it was. Each window writes with its own writer id: when the image's
autosave has changed since this window last read or wrote it (another window saved), this
window writes its own file from then on and says so.
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
from napari_gradcam.review.autosave import (
    Autosave,
    AutosaveSetAside,
    autosave_path,
    autosave_paths,
    content_key,
    discard_autosave,
    file_key,
    new_writer_id,
    read_autosave,
    read_stamp,
    sample_key,
    set_aside,
    write_autosave,
)

if TYPE_CHECKING:
    from napari_gradcam._napari.annotations.file_actions import AnnotationDock

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

    ``folder`` defaults to ``napari_gradcam.review.autosave.autosave_dir()``.
    """

    def __init__(self, dock: AnnotationDock, folder: Path | None = None) -> None:
        self._dock = dock
        self.folder = folder
        self.pending: Autosave | None = None
        self.writer = new_writer_id()
        self._followed: Shapes | None = None
        self._written: set[str] = set()
        self._answered: set[Path] = set()
        self._stamps: dict[Path, tuple[str, int]] = {}
        self._own: set[str] = set()
        self._keys: weakref.WeakKeyDictionary[Image, str] = weakref.WeakKeyDictionary()
        self.message = Label(value="")
        self.recover_button = PushButton(
            text="Recover", tooltip="add the autosaved annotations as a layer over their image"
        )
        self.discard_button = PushButton(
            text="Discard", tooltip="delete the autosave (one read only in part is kept aside)"
        )
        self.prompt = Container(
            widgets=[self.message, self.recover_button, self.discard_button],
            layout="horizontal",
            labels=False,
            visible=False,
        )
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
            annotations, _changed = layer_annotations(shapes, image, self._dock.labels)
        finally:
            self.follow(shapes)
        path = self._target(key)
        revision = self._stamps.get(path, ("", 0))[1] + 1
        autosave = Autosave(
            key,
            image_reference(image),
            annotations,
            self._dock.labels.as_dict(),
            shapes.name,
            writer=self.writer,
            revision=revision,
        )
        self._written.add(key)
        written = write_autosave(autosave, self.folder, path)
        self._stamps[path] = autosave.stamp
        return written

    def _target(self, key: str) -> Path:
        """The image's shared autosave, or this window's own once another window wrote too."""
        own = autosave_path(key, self.folder, self.writer)
        shared = autosave_path(key, self.folder)
        if key in self._own or not shared.exists():
            return own if key in self._own else shared
        on_disk = read_stamp(shared)
        if on_disk is None:
            try:
                moved = set_aside(shared, "unreadable")
            except OSError as err:
                self._own.add(key)
                self._dock.warn(f"{shared.name} could not be read nor set aside ({err})")
                return own
            self._dock.warn(f"an autosave that could not be read was kept as {moved.name}")
            return shared
        if on_disk == self._stamps.get(shared):
            return shared
        self._own.add(key)
        self._dock.warn(
            "another napari window autosaved annotations of this image; so that neither "
            f"replaces the other, this window's autosave now goes to {own.name} in {own.parent}"
        )
        return own

    def _on_inserted(self, event: Event) -> None:
        if isinstance(event.value, Image):
            self.offer()

    def offer(self) -> None:
        """Show the recovery prompt for the first autosave of an open image to recover.

        An autosave that cannot be read whole is set aside and named in the dock.
        """
        if self.pending is not None:
            return
        images = [
            layer
            for layer in self._dock.viewer.layers
            if isinstance(layer, Image) and not is_gradcam_layer(layer)
        ]
        for image in images:
            key = self.key(image)
            if key in self._written:
                continue
            for path in autosave_paths(key, self.folder):
                found = None if path in self._answered else self._read(key, path)
                if found is not None and (found.annotations or found.skipped):
                    self.pending = found
                    self.message.value = f"{found.summary()} ({image.name})"
                    self.prompt.visible = True
                    return

    def _read(self, key: str, path: Path) -> Autosave | None:
        try:
            found = read_autosave(key, self.folder, path)
        except AutosaveSetAside as err:
            self._dock.warn(str(err))
            return None
        except OSError as err:
            self._dock.warn(f"the autosave {path.name} could not be read: {err}")
            return None
        if found is not None:
            self._stamps[path] = found.stamp
        return found

    def _answer(self) -> Autosave | None:
        pending, self.pending = self.pending, None
        self.prompt.visible = False
        if pending is None:
            return None
        self._answered.add(pending.path)
        if pending.skipped:
            try:
                moved = set_aside(pending.path, "partial")
            except OSError as err:
                self._dock.warn(f"the autosave {pending.path.name} could not be kept aside: {err}")
                self._own.add(pending.key)  # so it is not replaced either
                return pending
            self._stamps.pop(pending.path, None)
            self._dock.warn(
                f"{len(pending.annotations)} of {pending.total} autosaved annotations could be "
                f"read ({'; '.join(pending.skipped[:3])}); the autosave as it was is kept as "
                f"{moved.name} in {moved.parent}"
            )
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
        """Delete the offered autosave (one read in part is kept aside instead)."""
        pending = self._answer()
        if pending is not None and not pending.skipped:
            discard_autosave(pending.key, self.folder, pending.path)
            self._stamps.pop(pending.path, None)
        self.offer()

    def _image_of(self, key: str) -> Image | None:
        for layer in self._dock.viewer.layers:
            if isinstance(layer, Image) and not is_gradcam_layer(layer) and self.key(layer) == key:
                return layer
        return None
