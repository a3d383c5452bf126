"""Minimal reproduction: removing a Shapes layer, then any redraw, segfaults napari 0.9.2.

Run on Mesa's software GL under a virtual X server:

    xvfb-run -a -s "-screen 0 1280x1024x24" python shapes_segfault_repro.py         # exit 139
    xvfb-run -a -s "-screen 0 1280x1024x24" python shapes_segfault_repro.py --fix   # exit 0

``--fix`` makes the canvas's GL context current before the layer is removed, so the GL
commands that napari flushes on removal (``gc.collect()`` then ``context.finish()`` in
``VispyCanvas._clean_and_update_scenegraph``) run in the canvas's context, not in Qt's
compositing context. Each run ends with "OK" when napari survives.
"""

import faulthandler
import sys

import napari
import numpy as np
from qtpy.QtWidgets import QApplication


def process_events(rounds: int = 5) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


def main(fix: bool) -> None:
    faulthandler.enable()
    viewer = napari.Viewer()
    viewer.add_image(np.random.default_rng(0).random((512, 512, 3)), rgb=True)
    shapes = viewer.add_shapes(name="annotations", edge_color="yellow", edge_width=2)
    process_events()
    if fix:
        canvas = viewer.window._qt_viewer.canvas.native
        viewer.layers.events.removing.connect(lambda _event: canvas.makeCurrent())
    viewer.layers.remove(shapes)
    del shapes
    process_events()
    for _ in range(10):  # any redraw: zooming, adding a layer, ...
        viewer.camera.zoom *= 1.1
        process_events()
    viewer.close()
    print("OK", flush=True)


if __name__ == "__main__":
    main(fix="--fix" in sys.argv[1:])
