"""Each region target kind end to end in the dock: drawn, cut, explained, named and aligned."""

from pathlib import Path

import numpy as np
import pytest

from napari_gradcam._napari.explain import widget as widget_module
from napari_gradcam._napari.explain.recent_prompts import recent_prompts
from napari_gradcam._napari.explain.target_controls import LIKE, OUTPUT, PROMPT
from napari_gradcam._napari.explain.widget import GradCamWidget
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.target_words import target_in_words
from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.targets import LikeEmbedding, OutputRegion, Prompt
from napari_gradcam.core.text_encoder import TextEncoder
from tests._napari import target_models
from tests._napari.target_models import SEGMENTER_CLASSES, word_vectors
from tests._napari.test_result_layers import world_edges

TIMEOUT_MS = 60_000
MODELS = Path(__file__).parents[1] / "target_models.py"
SCALE, TRANSLATE = (0.7, 1.3), (10.0, -25.0)


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    return shown


def saved_model(folder: Path, name: str, card: ModelCard) -> tuple[str, str]:
    """Spec and weights of a model of ``target_models.py`` with its card beside the weights."""
    import torch

    spec = f"{MODELS}:{name}_factory"
    weights = folder / f"{name}.pt"
    torch.save(getattr(target_models, f"{name}_factory")().state_dict(), weights)
    card.to_json(weights.with_suffix(".json"))
    return spec, str(weights)


@pytest.fixture
def make_dock(make_napari_viewer, tmp_path, qtbot, monkeypatch):
    """A dock over a 64 x 96 image, its model saved with its card, or served loaded."""

    def make(name: str, card: ModelCard, text: TextEncoder | None = None, served=False):
        viewer = make_napari_viewer()
        image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), np.uint8)
        viewer.add_image(image, name="tile", scale=SCALE, translate=TRANSLATE)
        widget = GradCamWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Grad-CAM")
        widget.tiles.tiled.value = False
        if not (served or text):
            widget.model_spec, widget.weights.value = saved_model(tmp_path, name, card)
        else:  # as its loader builds it (a text tower; a dense model's card with classes)
            from napari_gradcam.core.loaded_model import LoadedModel
            from napari_gradcam.models import cache

            module = getattr(target_models, f"{name}_factory")().eval()
            loaded = LoadedModel(module, card, f"tiny-{name}", "factory", text=text)
            monkeypatch.setattr(cache, "cached_model", lambda *_args, **_kw: loaded)
            widget.model_spec = f"tiny-{name}"
        widget.load_model()
        qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
        return viewer, widget

    return make


def run(widget: GradCamWidget, qtbot) -> HeatmapRecord:
    widget.explain()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    layer = widget.maps.newest
    return layer, HeatmapRecord.of(layer)


def world_rectangle(rows: tuple[float, float], cols: tuple[float, float]) -> np.ndarray:
    """The world corners of image pixels ``rows`` x ``cols`` (pixel edges, inclusive)."""
    (r0, r1), (c0, c1) = rows, cols
    y0, y1 = TRANSLATE[0] + SCALE[0] * (r0 - 0.5), TRANSLATE[0] + SCALE[0] * (r1 + 0.5)
    x0, x1 = TRANSLATE[1] + SCALE[1] * (c0 - 0.5), TRANSLATE[1] + SCALE[1] * (c1 + 0.5)
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])


def test_like_a_region_explains_the_similarity_to_the_selected_shape(make_dock, qtbot, errors):
    card = ModelCard(name="encoder", input_size=(16, 16), output="embedding")
    viewer, widget = make_dock("encoder", card)
    assert widget.targets.kind.value == LIKE  # the encoder answers no class: like a region
    assert widget.targets.reason_unavailable(PROMPT) is not None  # no text tower
    shapes = viewer.add_shapes([world_rectangle((8, 23), (16, 47))], shape_type="rectangle")
    shapes.selected_data = {0}
    heatmap, record = run(widget, qtbot)
    assert errors == []
    assert heatmap.name == "Grad-CAM · like 'shape 1' · encoder"
    target = record.settings.target
    assert isinstance(target, LikeEmbedding) and target.label == "shape 1"
    assert len(target.embedding) == 8
    assert record.probability is None and record.score_text.startswith("similarity ")
    assert "like 'shape 1' similarity" in widget.result.value
    np.testing.assert_allclose(world_edges(heatmap), world_edges(viewer.layers["tile"]))


def test_a_prompt_typed_and_entered_explains_its_similarity(make_dock, qtbot, errors):
    card = ModelCard(name="vlm", input_size=(16, 16), output="embedding")
    viewer, widget = make_dock("encoder", card, TextEncoder(word_vectors, "an image of {}."))
    targets = widget.targets
    assert targets.reason_unavailable(PROMPT) is None
    targets.kind.value = PROMPT
    targets.prompt_text = "dense nuclei; tumour cells"
    targets.prompt.native.lineEdit().returnPressed.emit()  # Enter explains
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert errors == []
    heatmap = widget.maps.newest
    record = HeatmapRecord.of(heatmap)
    described = target_in_words(Prompt(("dense nuclei", "tumour cells")))
    assert heatmap.name == f"Grad-CAM · {described} · tiny-encoder"
    assert record.settings.target == Prompt(("dense nuclei", "tumour cells"))
    assert record.score_text.startswith("similarity ") and record.probability is None
    assert widget.result.value.startswith(f"{described} similarity ")
    assert recent_prompts()[0] == "dense nuclei; tumour cells"
    np.testing.assert_allclose(world_edges(heatmap), world_edges(viewer.layers["tile"]))


def test_a_tiled_like_a_region_map_is_named_while_it_fills_in(make_dock, qtbot, errors):
    card = ModelCard(name="encoder", input_size=(16, 16), output="embedding")
    viewer, widget = make_dock("encoder", card)
    widget.tiles.tiled.value, widget.tiles.skip_glass.value = True, False
    viewer.add_shapes([world_rectangle((8, 23), (16, 47))], shape_type="rectangle")
    names = []
    viewer.layers.events.inserted.connect(lambda event: names.append(event.value.name))
    heatmap, record = run(widget, qtbot)
    assert errors == []
    assert "Grad-CAM · like 'shape 1' · encoder" in names  # the layer added by the first batch
    assert heatmap.name == "Grad-CAM · like 'shape 1' · encoder" and record.tiles is not None
    assert isinstance(record.settings.target, LikeEmbedding)
    assert len(record.settings.target.embedding) == 8


def test_an_output_region_explains_a_class_inside_a_labels_mask(make_dock, qtbot, errors):
    card = ModelCard(name="segmenter", classes=SEGMENTER_CLASSES, output="dense", default_layer="1")
    viewer, widget = make_dock("segmenter", card, served=True)
    assert widget.targets.kind.value == OUTPUT
    painted = np.zeros((32, 48), np.uint8)
    painted[4:12, 8:24] = 3
    # half the image's resolution, the same placement: 2 x 2 image pixels per labels pixel
    viewer.add_labels(painted, name="cells", scale=(1.4, 2.6), translate=(10.35, -24.35))
    widget.targets.region_layer.value = viewer.layers["cells"]
    widget.targets.label_value.value = 3
    widget.targets.main.value = "nuclei"
    assert not widget.tiles.tiled.enabled and "one piece" in widget.tiles.tiled.tooltip
    heatmap, record = run(widget, qtbot)
    assert errors == []
    assert heatmap.name == "Grad-CAM · nuclei in 'cells label 3' · tiny-segmenter"
    target = record.settings.target
    assert isinstance(target, OutputRegion) and target.label == "cells label 3"
    assert record.to_facts()["target"]["mask_pixels"] == 16 * 32  # 8 x 16 labels px, 2 x 2 each
    assert " p=" in widget.result.value and "scale" not in widget.result.value
    np.testing.assert_allclose(world_edges(heatmap), world_edges(viewer.layers["tile"]))


def test_a_region_kind_without_its_region_says_what_to_draw(make_dock, qtbot, errors):
    card = ModelCard(name="encoder", input_size=(16, 16), output="embedding")
    viewer, widget = make_dock("encoder", card)
    widget.explain()
    assert errors == ["Grad-CAM: add a Shapes layer and draw the region on the image"]
    assert not widget.running and len(viewer.layers) == 1  # nothing half-made


def test_a_tiled_prompt_map_lists_each_tiles_similarity(make_dock, qtbot, errors):
    card = ModelCard(name="vlm", input_size=(16, 16), output="embedding")
    viewer, widget = make_dock("encoder", card, TextEncoder(word_vectors))
    widget.tiles.tiled.value, widget.tiles.skip_glass.value = True, False
    widget.tiles.show_helpers.value = True
    widget.targets.kind.value = PROMPT
    widget.targets.prompt_text = "dense nuclei"
    widget.explain()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert errors == []
    heatmap = widget.maps.newest
    described = target_in_words(Prompt(("dense nuclei",)))
    assert heatmap.name == f"Grad-CAM · {described} · tiny-encoder"
    record = HeatmapRecord.of(heatmap)
    assert record.tiles is not None and record.target_name == described
    columns = widget.tiles.table.model_.columns
    assert list(columns) == ["tile", "similarity", "tissue", "entropy", "energy", "roughness"]
    assert np.all(np.abs(columns["similarity"]) <= 1) and len(columns["tile"]) > 1
    assert f"tiles ({described}), similarity " in widget.result.value
    np.testing.assert_allclose(world_edges(heatmap), world_edges(viewer.layers["tile"]))
