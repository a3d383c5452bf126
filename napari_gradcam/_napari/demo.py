"""``napari-gradcam demo``: open a sample, dock the widget, explain it with a bundled model.

The model is loaded (importing torch) before the window opens, so that the widget can offer
its classes and the demo can pick the class to explain.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from napari_gradcam._napari.jobs import load_model_info
from napari_gradcam._napari.records import is_heatmap

if TYPE_CHECKING:
    from napari import Viewer

    from napari_gradcam._napari.explain.widget import GradCamWidget

PLUGIN = "napari-gradcam"
SAMPLES = ("he", "ihc")
WINDOW_SIZE = (1400, 900)
POLL_MS = 200
logger = logging.getLogger(__name__)


def has_heatmap(viewer: Viewer) -> bool:
    """Whether the viewer holds a heatmap made by the widget."""
    return any(is_heatmap(layer) for layer in viewer.layers)


def run_demo(
    sample: str = "he",
    screenshot: str | None = None,
    timeout_s: float = 300.0,
    target: str = "nuclei-dense",
    model: str = "demo",
) -> int:
    """Open napari with a sample and the Grad-CAM widget, and explain the sample once.

    Parameters
    ----------
    sample : {"he", "ihc"}
        Which bundled sample to open.
    screenshot : str, optional
        Save a screenshot of the window here once the heatmap is shown (waiting at most
        ``timeout_s``), then close napari. Without it, napari stays open until closed.
    target : str
        Class of the bundled model to explain ("predicted" for the top class).
    model : {"demo", "demo-vit"}
        The small bundled CNN or ViT.

    Returns
    -------
    int
        0 on success, 1 when no heatmap appeared (the reason is logged).
    """
    import napari

    if sample not in SAMPLES:
        raise ValueError(f"unknown sample {sample!r}; choose one of {', '.join(SAMPLES)}")
    _loaded, info = load_model_info(model, None)
    viewer = napari.Viewer(title="napari-gradcam demo")
    viewer.window.resize(*WINDOW_SIZE)
    viewer.open_sample(PLUGIN, sample)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Grad-CAM")
    widget.model_spec = model
    widget.show_model_info(info)
    widget.target.value = target
    widget.explain()
    if screenshot is None:
        napari.run()
        return 0
    return screenshot_when_explained(viewer, widget, Path(screenshot), timeout_s)


def screenshot_when_explained(
    viewer: Viewer, widget: GradCamWidget, path: Path, timeout_s: float
) -> int:
    """Wait (running Qt events) for the heatmap, save a window screenshot and close.

    Return 0 when the screenshot was saved, 1 when the job failed or timed out.
    """
    from qtpy.QtCore import QCoreApplication, QEventLoop, QTimer

    loop = QEventLoop()
    timer = QTimer()
    deadline = time.monotonic() + timeout_s

    def poll() -> None:
        if has_heatmap(viewer) and not widget.running:
            QCoreApplication.processEvents()  # what the dock deferred, e.g. the colour bar
            viewer.reset_view()
            viewer.screenshot(str(path), canvas_only=False)
            loop.exit(0)
        elif not widget.running and not has_heatmap(viewer):
            logger.error("the demo explanation failed: %s", widget.result.value)
            loop.exit(1)
        elif time.monotonic() > deadline:
            logger.error("no heatmap after %.0f s; giving up", timeout_s)
            widget.runner.cancel()
            loop.exit(1)

    timer.timeout.connect(poll)
    timer.start(POLL_MS)
    status = loop.exec()
    timer.stop()
    viewer.close()
    return status
