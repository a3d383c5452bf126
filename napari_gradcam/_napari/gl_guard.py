"""Work around napari 0.9's segfault after a layer is removed.

See ``docs/upstream/napari-shapes-segfault.md``.

When a layer is removed, napari (>= 0.6.3, ``VispyCanvas._clean_and_update_scenegraph``)
runs ``gc.collect()`` and ``context.finish()``, which executes vispy's queued GL commands,
the deletion of the removed layer's buffers and programs among them, outside a paint event.
The canvas's GL context is not current then (Qt's compositing context is), so they run in the
wrong context; under Mesa's software GL the canvas's next redraw segfaults. Removing a Shapes,
Points or Labels layer triggers it; the plugin re-adding its annotations layer after the user
deleted it only supplied the redraw.

The guard makes the canvas's context current when a layer is about to be removed (the
layer list's ``removing`` event comes before napari's ``removed`` handler), so those commands
run where they belong. It costs nothing when napari has no such flush.
"""

from __future__ import annotations

import logging

from napari.utils.events import Event
from napari.viewer import Viewer
from qtpy.QtWidgets import QWidget

LOG = logging.getLogger(__name__)
GUARD_PROPERTY = "napari_gradcam_gl_guard"


def canvas_widget(viewer: Viewer) -> QWidget | None:
    """Return the viewer's canvas (a ``QOpenGLWidget``), or None without a Qt window."""
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    canvas = getattr(qt_viewer, "canvas", None)
    native = getattr(canvas, "native", None)
    return native if hasattr(native, "makeCurrent") else None


def guard_layer_removal(viewer: Viewer) -> None:
    """Make the canvas's GL context current before any layer of ``viewer`` is removed.

    Idempotent: the docks of the plugin all call it and the viewer is guarded once.
    """
    canvas = canvas_widget(viewer)
    if canvas is None or canvas.property(GUARD_PROPERTY):
        return
    canvas.setProperty(GUARD_PROPERTY, True)

    def make_current(_event: Event) -> None:
        try:
            canvas.makeCurrent()
        except RuntimeError:  # the canvas is already deleted (the window closed)
            LOG.debug("canvas gone; nothing to make current")

    viewer.layers.events.removing.connect(make_current)
