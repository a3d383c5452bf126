"""Save docs/mil_dock.png: the slide-level model (MIL) dock after a run on the CC0 slide.

Run under a display or a virtual X server:

    xvfb-run -a -s "-screen 0 1700x1100x24" .venv/bin/python tools/mil_screenshot.py

The bundled demo card explains the slide; the first "for" row of the table is drilled down,
then the view zooms out to show the tile map around it (the dock shows one map at a time: the
table's ranking score, gradient x embedding). Embeddings are cached in a temporary
folder (the user's cache is left alone).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import napari
from qtpy.QtCore import QEventLoop, Qt, QTimer
from slide_screenshot import save_window

from napari_gradcam._napari.mil.widget import NAME, SlideMilWidget
from napari_gradcam._napari.reader import read_slide
from napari_gradcam.data import HE_SLIDE_PATH


def wait(widget: SlideMilWidget) -> None:
    """Run Qt's event loop until the dock's job has ended."""
    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: None if widget.running else loop.exit(0))
    timer.start(50)
    loop.exec()


def main(path: Path) -> None:
    """Run the demo card, drill the top tile down, zoom out, save."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    for data, kwargs, _ in read_slide(str(HE_SLIDE_PATH)):
        viewer.add_image(data, **kwargs)
    with tempfile.TemporaryDirectory() as cache:
        widget = SlideMilWidget(viewer, cache_dir=cache)
        dock = viewer.window.add_dock_widget(widget, name=NAME)
        viewer.window._qt_window.resizeDocks([dock], [560], Qt.Orientation.Horizontal)
        widget.run()
        wait(widget)
        widget.table.selectRow(0)
        wait(widget)
    viewer.scene.camera.zoom /= 2
    save_window(viewer, path)
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/mil_dock.png"))
