"""Time to the first heatmap rows in the Grad-CAM dock on the CC0 slide (needs a display)."""

from __future__ import annotations

import time

TIMEOUT_S = 600.0


def run_once(viewer, widget) -> dict:
    """Click Explain; return seconds to the first rows shown and to the end."""
    from qtpy.QtCore import QEventLoop, QTimer

    marks: dict[str, float] = {}
    start = time.perf_counter()
    widget.explain()

    def on_yield(event) -> None:
        rows = getattr(event, "rows", None)  # the map rows a tiled batch filled in
        if rows is not None and rows.size and "first_rows" not in marks:
            marks["first_rows"] = time.perf_counter() - start

    widget.runner.worker.yielded.connect(on_yield)
    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: None if widget.running else loop.exit(0))
    timer.start(20)
    loop.exec()
    timer.stop()
    marks["done"] = time.perf_counter() - start
    return {key: round(value, 2) for key, value in marks.items()}


def time_widget() -> dict:
    """Cold (model not loaded), warm (loaded) and again (tissue known too)."""
    import napari

    from napari_gradcam.data import HE_SLIDE_PATH

    viewer = napari.Viewer(show=True)
    viewer.open(str(HE_SLIDE_PATH), plugin="napari-gradcam")
    _, widget = viewer.window.add_plugin_dock_widget("napari-gradcam", "Grad-CAM")
    widget.model_spec = "demo"
    timings = {"cold": run_once(viewer, widget)}
    widget.tiles._tissue.clear()  # warm: the model is loaded, the tissue is found again
    timings["warm"] = run_once(viewer, widget)
    timings["again"] = run_once(viewer, widget)  # the tissue is known too
    timings["explained_tiles"] = int(widget.result.value.split()[0])
    viewer.close()
    return timings
