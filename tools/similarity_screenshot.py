"""Save docs/similarity_dock.png: the slide similarity dock after a prompt on the CC0 slide.

Run under a display or a virtual X server:

    xvfb-run -a -s "-screen 0 1700x1100x24" .venv/bin/python tools/similarity_screenshot.py

The bundled vision-language demo maps the CC0 slide's similarity to "nuclei-dense tissue"; the
most similar tile is drilled down, then the view shows the whole slide and its tile map.
Embeddings are cached in a temporary folder (the user's cache is left alone).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import napari
from mil_screenshot import wait
from qtpy.QtCore import Qt
from slide_screenshot import save_window

from napari_gradcam._napari.reader import read_slide
from napari_gradcam._napari.similarity.widget import NAME, SlideSimilarityWidget
from napari_gradcam.data import HE_SLIDE_PATH

PROMPT = "nuclei-dense tissue"


def main(path: Path) -> None:
    """Map the prompt, drill the top tile down, show the whole slide, save."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    for data, kwargs, _ in read_slide(str(HE_SLIDE_PATH)):
        viewer.add_image(data, **kwargs)
    with tempfile.TemporaryDirectory() as cache:
        widget = SlideSimilarityWidget(viewer, cache_dir=cache)
        dock = viewer.window.add_dock_widget(widget, name=NAME)
        viewer.window._qt_window.resizeDocks([dock], [560], Qt.Orientation.Horizontal)
        widget.prompt.value = PROMPT
        widget.run()
        wait(widget)
        widget.table.selectRow(0)
        wait(widget)
    viewer.reset_view()
    save_window(viewer, path)
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/similarity_dock.png"))
