"""Plugin flows that remove layers and add Shapes again, run in a shown viewer (a subprocess).

napari 0.9's layer removal flushes vispy's GL commands with another GL context current;
under Mesa's software GL the next redraw then segfaults. ``test_removal_guard.py`` runs each
flow here in its own process (a segfault kills it) and asserts it exits 0.

Usage: ``python -m tests._napari.removal_flows FLOW [--unguarded]``.
"""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

TIMEOUT_S = 60.0
TINY_SPEC = f"{Path(__file__).with_name('tiny_models.py')}:factory"


def process_events(rounds: int = 10) -> None:
    """Let Qt repaint the canvas a few times."""
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()


def wait_until(condition: Callable[[], bool]) -> None:
    """Process events until ``condition()`` holds; fail after ``TIMEOUT_S``."""
    import time

    end = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the flow did not finish in time")
        process_events(1)
        time.sleep(0.01)


def explain(widget) -> None:
    """Click Explain and wait for the heatmap."""
    widget.explain_button.clicked.emit()
    wait_until(lambda: not widget.running)
    process_events()


def remove(viewer, name: str) -> None:
    """Remove layer ``name`` as the layer list's delete button does, then redraw."""
    viewer.layers.remove(name)
    process_events()
    viewer.camera.zoom *= 1.1
    process_events()


def flow_explain_delete_explain(viewer, gradcam, annotations) -> None:
    """Explain, delete the heatmap and the annotations layer, Explain again (the issue)."""
    explain(gradcam)
    remove(viewer, viewer.layers[1].name)
    remove(viewer, "annotations")
    explain(gradcam)
    remove(viewer, "annotations")
    explain(gradcam)


def flow_hot_regions_after_delete(viewer, gradcam, annotations) -> None:
    """Explain, delete the annotations layer, then Add hot regions (a new Shapes layer)."""
    explain(gradcam)
    remove(viewer, "annotations")
    annotations.hot.mode.value = "fraction"
    annotations.hot.min_area.value = 0
    annotations.add_hot_regions()
    process_events()
    assert annotations.shapes is not None and len(annotations.shapes.data) > 0


def flow_delete_heatmap_and_points(viewer, gradcam, annotations) -> None:
    """Delete a heatmap, then a Points layer (not the plugin's, same crash path)."""
    explain(gradcam)
    heatmap = next(layer for layer in viewer.layers if "napari_gradcam" in layer.metadata)
    remove(viewer, heatmap.name)
    viewer.add_points(np.array([[5.0, 5.0], [20.0, 30.0]]), name="points")
    process_events()
    remove(viewer, "points")
    explain(gradcam)


FLOWS = {
    "explain_delete_explain": flow_explain_delete_explain,
    "hot_regions_after_delete": flow_hot_regions_after_delete,
    "delete_heatmap_and_points": flow_delete_heatmap_and_points,
}


def main(flow: str, guarded: bool = True) -> None:
    """Open a shown viewer with both docks and run ``flow``."""
    faulthandler.enable()
    import napari

    from napari_gradcam._napari import gl_guard

    if not guarded:  # before the docks import it
        gl_guard.guard_layer_removal = lambda viewer: None
    from napari_gradcam._napari.annotations.widget import AnnotationWidget
    from napari_gradcam._napari.explain.widget import GradCamWidget

    viewer = napari.Viewer(show=True)
    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), name="tile")
    gradcam = GradCamWidget(viewer)
    gradcam.model_spec = TINY_SPEC
    gradcam.tiles.tiled.value = False
    annotations = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(gradcam, name="Grad-CAM")
    viewer.window.add_dock_widget(annotations, name="Grad-CAM annotations")
    process_events()
    FLOWS[flow](viewer, gradcam, annotations)
    viewer.close()
    sys.stdout.write(f"{flow}: ok\n")


if __name__ == "__main__":
    main(sys.argv[1], guarded="--unguarded" not in sys.argv[2:])
