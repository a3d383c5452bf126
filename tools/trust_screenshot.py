"""Save docs/trust.png: the trust & compare dock after checking one tile of a tiled slide map.

Run under a display or a virtual X server:

    xvfb-run -a -s "-screen 0 1700x1100x24" .venv/bin/python tools/trust_screenshot.py

``tools/trust_screenshot.py docs/trust_vit.png demo-vit tissue-mean`` checks a map of the
bundled ViT demo instead (with the tissue-mean baseline: blurring keeps its class).

The window is shrunk to 1280 px and quantised to 128 colours to keep the PNG small.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from qtpy.QtCore import QEventLoop, Qt, QTimer
from slide_screenshot import explained_viewer, save_window

from napari_gradcam._napari.trust.widget import TrustWidget

CLASS = "nuclei-dense"
PROBABILITY = 0.8
"""The checked tile is the CLASS tile with the probability closest to this: a confident tile
would keep its class however its pixels are replaced (the demo model decides by stain)."""


def wait_for(widget: TrustWidget) -> None:
    """Run the event loop until the dock's job is done."""
    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: None if widget.running else loop.exit(0))
    timer.start(50)
    loop.exec()


def main(path: Path, model: str = "demo", baseline: str = "blur") -> None:
    """Explain the slide tile by tile, check one ``CLASS`` tile, and save."""
    viewer, explainer = explained_viewer(CLASS, model)
    features, image = explainer.tiles.features, explainer.image.value
    heatmap = explainer.maps.newest
    explainer.native.parentWidget().close()
    trust = TrustWidget(viewer)
    dock = viewer.window.add_dock_widget(trust, name="Grad-CAM trust & compare")
    viewer.window._qt_window.resizeDocks([dock], [600], Qt.Orientation.Horizontal)
    trust.heatmap.value = heatmap
    wait_for(trust)
    probability, classes = np.asarray(features["probability"]), np.asarray(features["class"])
    distance = np.where(classes == CLASS, np.abs(probability - PROBABILITY), 2.0)
    y0, x0, y1, x1 = np.asarray(features["box"], dtype=float)[int(distance.argmin())]
    viewer.scene.camera.center = tuple(image.data_to_world(((y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2)))
    viewer.scene.camera.zoom *= 4
    trust.sanity_steps.value = 3
    trust.baseline.value = baseline
    for button in (trust.features_button, trust.trust_button):
        button.clicked.emit()
        wait_for(trust)
    save_window(viewer, path)
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/trust.png"), *sys.argv[2:4])
