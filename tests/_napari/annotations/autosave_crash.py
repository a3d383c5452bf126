"""Annotate, let the autosave run, edit again and die by SIGKILL (run by test_autosave.py).

Usage: ``python -m tests._napari.annotations.autosave_crash FOLDER``; the image is
``crash_image()`` (unsaved pixels, so its autosave key is a content hash).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np


def crash_image() -> np.ndarray:
    """The annotated image (the same in the test and in this process)."""
    return np.random.default_rng(7).integers(0, 256, (60, 80, 3), dtype=np.uint8)


def triangle(y: float, x: float) -> np.ndarray:
    """A small triangle at ``(y, x)`` in data coordinates."""
    return np.array([[y, x], [y + 10, x], [y, x + 12]], dtype=float)


def main(folder: str) -> None:
    """Annotate two shapes, wait for their autosave, add a third and get killed."""
    os.environ["NAPARI_GRADCAM_AUTOSAVE_DIR"] = folder
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_gradcam._napari.annotations.widget import AnnotationWidget
    from napari_gradcam.review.autosave import autosave_path, content_key

    viewer = napari.Viewer(show=False)
    viewer.add_image(crash_image(), name="tile")
    dock = AnnotationWidget(viewer)
    shapes = viewer.add_shapes([triangle(5, 5), triangle(30, 40)], shape_type="polygon")
    dock.annotations.value = shapes
    shapes.selected_data = {1}
    dock.set_note("kept after the crash")
    path = autosave_path(content_key(crash_image()))
    end = time.monotonic() + 60
    while not path.exists() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)
    shapes.add([triangle(40, 10)], shape_type="polygon")
    QApplication.processEvents()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1])
