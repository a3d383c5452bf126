"""Save docs/annotations.png and docs/autosave_recovery.png: the annotations dock over a heatmap.

Run under a display or a virtual X server:

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python tools/annotations_screenshot.py

The H&E sample is explained with the demo model as ``napari-gradcam demo`` does; "Add hot
regions" (its defaults) outlines the map, one region is labelled and noted and selected.
The autosave is then written, and a second window on the same sample shows the recovery
prompt. Both windows are 1920 x 1080 with the Grad-CAM and annotations docks open.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import napari
from qtpy.QtCore import QEventLoop, QTimer
from slide_screenshot import save_window

from napari_gradcam._napari.annotations.widget import AnnotationWidget
from napari_gradcam._napari.demo import PLUGIN
from napari_gradcam._napari.jobs import load_model_info

WINDOW = (1920, 1080)


def wait_until(done) -> None:
    """Run Qt's event loop until ``done()`` is true."""
    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: loop.exit(0) if done() else None)
    timer.start(50)
    loop.exec()


def annotated_viewer() -> tuple[napari.Viewer, AnnotationWidget]:
    """The H&E sample explained, with both docks, hot regions added and one labelled."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW)
    viewer.open_sample(PLUGIN, "he")
    _, explain = viewer.window.add_plugin_dock_widget(PLUGIN, "Grad-CAM")
    _loaded, info = load_model_info("demo", None)
    explain.model_spec = "demo"
    explain.show_model_info(info)
    explain.target.value = "nuclei-dense"
    explain.explain()
    wait_until(lambda: not explain.running)
    dock = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Grad-CAM annotations")
    dock.add_hot_regions()
    wait_until(lambda: not dock.computing)
    dock.select_annotation(1)
    dock.label.value = "suspicious"
    dock.set_note("dense nuclei: review")
    wait_until(lambda: not dock.computing and not dock.probabilities.running)
    viewer.layers.selection.active = dock.shapes
    dock.shapes.mode = "pan_zoom"
    viewer.reset_view()
    return viewer, dock


def main(folder: Path) -> None:
    """Save both screenshots into ``folder``."""
    os.environ["NAPARI_GRADCAM_AUTOSAVE_DIR"] = tempfile.mkdtemp(prefix="autosave-")
    viewer, dock = annotated_viewer()
    print("annotations dock height:", dock.native.sizeHint().height(), "px")
    save_window(viewer, folder / "annotations.png")
    dock.autosave.save_now()
    again = napari.Viewer(show=True)
    again.window.resize(*WINDOW)
    again.open_sample(PLUGIN, "he")
    again.window.add_plugin_dock_widget(PLUGIN, "Grad-CAM")
    recovering = AnnotationWidget(again)
    again.window.add_dock_widget(recovering, name="Grad-CAM annotations")
    assert recovering.autosave.offering, "no recovery prompt"
    save_window(again, folder / "autosave_recovery.png")
    again.close()
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs"))
