"""The annotations dock's statistics on a prompt's heatmap: its similarity where p(class) was."""

import math

import numpy as np
import pytest
from napari.layers import Layer

from napari_gradcam._napari.annotations.widget import AnnotationWidget
from napari_gradcam._napari.explain.job import ExplainJob, RegionResult
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.result_layers import heatmap_layer
from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import OutputRegion, Prompt
from napari_gradcam.core.text_encoder import TextEncoder
from napari_gradcam.models import cache
from tests._napari.annotations.test_annotation_widget import STRIDE, hot_cam, settle
from tests._napari.target_models import encoder_factory, word_vectors

PROMPT = Prompt(("nuclei-dense tissue",))


def prompt_result(target=PROMPT, words="prompt 'nuclei-dense tissue'") -> RegionResult:
    explanation = Explanation(
        cam=hot_cam(),
        method="gradcam",
        layer="visual.trunk",
        targets=np.array([-1]),
        target_names=(words,),
        scores=np.array([0.31], np.float32),
        probabilities=np.array([math.nan], np.float32),
        stride=STRIDE,
        origin=(0.0, 0.0),
        input_shape=(64, 96),
    )
    box = Box(0, 0, 64, 96)
    return RegionResult(box, explanation, STRIDE, (0.0, 0.0), 0, ExplainSettings(target=target))


@pytest.fixture
def tiny_vlm(monkeypatch) -> LoadedModel:
    """A tiny vision-language model, served as the model cache would serve it."""
    card = ModelCard(name="vlm", input_size=(16, 16), output="embedding")
    text = TextEncoder(word_vectors)
    loaded = LoadedModel(encoder_factory().eval(), card, "tiny-vlm", "factory", text=text)
    monkeypatch.setattr(cache, "cached_model", lambda *_args, **_kw: loaded)
    return loaded


def test_a_prompt_maps_statistics_say_what_the_map_is(make_napari_viewer, tile, qtbot, tiny_vlm):
    viewer = make_napari_viewer()
    image = viewer.add_image(tile, name="tile", scale=(0.5, 0.5), translate=(10, -20))
    job = ExplainJob("tiny-vlm", settings=ExplainSettings())
    heatmap = viewer.add_layer(Layer.create(*heatmap_layer(prompt_result(), image, job)))
    assert heatmap.name == "Grad-CAM · prompt 'nuclei-dense tissue' · tiny-vlm"
    dock = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Grad-CAM annotations")
    dock.hot.mode.value = "fraction"
    dock.hot.min_area.value = dock.hot.merge.value = 0
    dock.add_hot_regions()
    settle(dock, qtbot)
    features = dock.shapes.features
    assert len(features) == 2 and np.isfinite(features["mean"]).all()
    # each region's own similarity to the prompt, where a class map shows p(class)
    similarity = features["probability"].to_numpy(float)
    assert np.isfinite(similarity).all() and (np.abs(similarity) <= 1).all()
    assert dock.table.header_text("probability") == "similarity"
    column = [dock.table.horizontalHeaderItem(i).text() for i in range(dock.table.columnCount())]
    tip = dock.table.horizontalHeaderItem(column.index("similarity")).toolTip()
    assert tip.startswith("the region's similarity to prompt 'nuclei-dense tissue'")
    mean_tip = dock.table.horizontalHeaderItem(column.index("mean %")).toolTip()
    assert mean_tip.endswith("the heatmap explains prompt 'nuclei-dense tissue'")
    assert dock.table.item(0, column.index("similarity")).text() == f"{similarity[0]:.3g}"


def test_an_output_region_maps_statistics_run_no_model(make_napari_viewer, tile, qtbot):
    viewer = make_napari_viewer()
    image = viewer.add_image(tile, name="tile")
    mask = np.zeros((64, 96), bool)
    mask[10:20, 10:30] = True
    result = prompt_result(OutputRegion("nuclei", mask, "shape 1"), "nuclei in 'shape 1'")
    job = ExplainJob("no-such-model", settings=ExplainSettings())
    viewer.add_layer(Layer.create(*heatmap_layer(result, image, job)))
    dock = AnnotationWidget(viewer)
    dock.hot.mode.value = "fraction"
    dock.hot.min_area.value = dock.hot.merge.value = 0
    dock.add_hot_regions()
    settle(dock, qtbot)
    assert dock.table.header_text("probability") == "p(-)"
    assert "nuclei in 'shape 1'" in dock.table.horizontalHeaderItem(6).toolTip()
    assert dock.table.item(0, 6).text() == "-" and "cannot" not in dock.status.value  # no model
