"""'Add hot regions' with its defaults outlines a handful of regions on the demo's real map."""

from napari_gradcam._napari.annotations.hot_options import MAX_REGIONS
from napari_gradcam._napari.annotations.widget import AnnotationWidget
from napari_gradcam._napari.demo import PLUGIN, has_heatmap
from napari_gradcam._napari.jobs import load_model_info

EXPLAIN_MS = 300_000


def test_the_defaults_give_a_few_regions_on_the_he_sample(make_napari_viewer, qtbot):
    _loaded, info = load_model_info("demo", None)
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "he")
    _, explain = viewer.window.add_plugin_dock_widget(PLUGIN, "Grad-CAM")
    explain.model_spec = "demo"
    explain.show_model_info(info)
    explain.target.value = "nuclei-dense"
    explain.explain()
    qtbot.waitUntil(lambda: has_heatmap(viewer), timeout=EXPLAIN_MS)
    dock = AnnotationWidget(viewer)
    dock.add_hot_regions()
    count = len(dock.shapes.data)
    assert 3 <= count <= min(10, MAX_REGIONS), dock.status.value
    qtbot.waitUntil(lambda: not dock.computing, timeout=EXPLAIN_MS)
    areas = dock.shapes.features["area_um2"]
    assert (areas >= dock.hot.min_area.value).all()
    assert dock.status.value.startswith(f"added {count} hot region(s)")
    dock.hot.min_area.value = dock.hot.merge.value = 0
    dock.hot.max_regions.value = 100_000
    dock.add_hot_regions()
    assert len(dock.shapes.data) - count > 100  # what the old defaults gave: a flood
    qtbot.waitUntil(lambda: not dock.probabilities.running, timeout=EXPLAIN_MS)
