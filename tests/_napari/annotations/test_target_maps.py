"""The annotations dock's statistics on a prompt's heatmap (no class, no probability)."""

import math

import numpy as np
from napari.layers import Layer

from napari_gradcam._napari.annotations.widget import AnnotationWidget
from napari_gradcam._napari.explain.job import ExplainJob, RegionResult
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.result_layers import heatmap_layer
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import Prompt
from tests._napari.annotations.test_annotation_widget import STRIDE, hot_cam, settle

PROMPT = Prompt(("nuclei-dense tissue",))


def prompt_result() -> RegionResult:
    explanation = Explanation(
        cam=hot_cam(),
        method="gradcam",
        layer="visual.trunk",
        targets=np.array([-1]),
        target_names=("prompt 'nuclei-dense tissue'",),
        scores=np.array([0.31], np.float32),
        probabilities=np.array([math.nan], np.float32),
        stride=STRIDE,
        origin=(0.0, 0.0),
        input_shape=(64, 96),
    )
    box = Box(0, 0, 64, 96)
    return RegionResult(box, explanation, STRIDE, (0.0, 0.0), 0, ExplainSettings(target=PROMPT))


def test_a_prompt_maps_statistics_say_what_the_map_is(make_napari_viewer, tile, qtbot):
    viewer = make_napari_viewer()
    image = viewer.add_image(tile, name="tile", scale=(0.5, 0.5), translate=(10, -20))
    job = ExplainJob("demo-vlm", settings=ExplainSettings())
    heatmap = viewer.add_layer(Layer.create(*heatmap_layer(prompt_result(), image, job)))
    assert heatmap.name == "Grad-CAM · prompt 'nuclei-dense tissue' · demo-vlm"
    dock = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Grad-CAM annotations")
    dock.hot.mode.value = "fraction"
    dock.hot.min_area.value = dock.hot.merge.value = 0
    dock.add_hot_regions()
    settle(dock, qtbot)
    features = dock.shapes.features
    assert len(features) == 2 and np.isfinite(features["mean"]).all()
    assert features["probability"].isna().all()  # no class, so no probability: nothing run
    assert dock.table.header_text("probability") == "p(-)"
    column = [dock.table.horizontalHeaderItem(i).text() for i in range(dock.table.columnCount())]
    tip = dock.table.horizontalHeaderItem(column.index("p(-)")).toolTip()
    assert "prompt 'nuclei-dense tissue'" in tip
    mean_tip = dock.table.horizontalHeaderItem(column.index("mean %")).toolTip()
    assert mean_tip.endswith("the heatmap explains prompt 'nuclei-dense tissue'")
    assert dock.table.item(0, column.index("p(-)")).text() == "-"
    assert dock.table.item(0, column.index("mean %")).text() != "-"
