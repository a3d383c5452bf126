"""Save docs/slide.png: the Grad-CAM dock after a tiled run on the CC0 slide, with its tiles.

Run under a display or a virtual X server:

    xvfb-run -a -s "-screen 0 1700x1100x24" .venv/bin/python tools/slide_screenshot.py

``tools/slide_screenshot.py docs/vit_demo.png demo-vit`` saves the same view with the bundled
ViT demo instead of the CNN.

The window is shrunk to 1280 px and quantised to 128 colours to keep the PNG small.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from PIL import Image
from qtpy.QtCore import QEventLoop, Qt, QTimer

from napari_gradcam._napari.explain.widget import GradCamWidget
from napari_gradcam._napari.jobs import load_model_info
from napari_gradcam._napari.reader import read_slide
from napari_gradcam.data import HE_SLIDE_PATH

WIDTH = 1280


def explained_viewer(target: str, model: str = "demo") -> tuple[napari.Viewer, GradCamWidget]:
    """Return a viewer with the slide and the dock, after a tiled run of ``model`` on ``target``."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    for data, kwargs, _ in read_slide(str(HE_SLIDE_PATH)):
        viewer.add_image(data, **kwargs)
    widget = GradCamWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="Grad-CAM")
    viewer.window._qt_window.resizeDocks([dock], [600], Qt.Orientation.Horizontal)
    _loaded, info = load_model_info(model, None)
    widget.model_spec = model
    widget.show_model_info(info)
    widget.target.value = target
    widget.explain()
    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: None if widget.running else loop.exit(0))
    timer.start(50)
    loop.exec()
    return viewer, widget


def save_window(viewer: napari.Viewer, path: Path) -> None:
    """Let the window settle, then save it ``WIDTH`` px wide in 128 colours (a small PNG)."""
    for _ in range(20):
        napari.qt.get_qapp().processEvents()
        time.sleep(0.05)
    full = path.with_suffix(".full.png")
    viewer.screenshot(str(full), canvas_only=False)
    image = Image.open(full).convert("RGB")
    small = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    quantized = small.quantize(
        colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    quantized.save(path, optimize=True)  # octree: small legend swatches keep their colour
    full.unlink()


def main(path: Path, model: str = "demo", target: str = "nuclei-dense") -> None:
    """Explain, pick the fourth most confident ``target`` tile in the table, zoom out, save."""
    viewer, widget = explained_viewer(target, model)
    table = widget.tiles.table
    column = list(table.model_.columns).index("probability")
    table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    classes = widget.tiles.features["class"]
    rows = [r for r in range(table.model_.rowCount()) if classes[table.model_.row_of(r)] == target]
    table.select_row(rows[min(3, len(rows) - 1)])
    viewer.scene.camera.zoom /= 3
    viewer.layers.selection.active = widget.maps.newest
    save_window(viewer, path)
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/slide.png"), *sys.argv[2:3])
