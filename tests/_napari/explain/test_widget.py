import functools

import numpy as np
import pytest
from napari.layers import Image

from napari_gradcam._napari.explain import widget as widget_module
from napari_gradcam._napari.explain.widget import GradCamWidget
from napari_gradcam._napari.heatmap_style import DEFAULT_OPACITY, HEATMAP_COLORMAP, to_display
from napari_gradcam._napari.regions import FIELD_OF_VIEW, RECTANGLES
from napari_gradcam._napari.result_layers import METADATA_KEY
from tests._napari.test_result_layers import world_edges

TIMEOUT_MS = 30_000


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    return shown


@pytest.fixture
def make_widget(make_gradcam_widget):
    """Widgets that explain one crop per region (tiling: test_tiled_widget.py)."""
    return functools.partial(make_gradcam_widget, tiled=False)


def run(widget: GradCamWidget, qtbot) -> None:
    widget.explain_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def heatmaps(viewer) -> list[Image]:
    return [layer for layer in viewer.layers if METADATA_KEY in layer.metadata]


def test_explain_adds_an_aligned_heatmap_and_annotations(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile, scale=(0.7, 1.3), translate=(10, -25), name="tile")
    run(widget, qtbot)
    assert errors == []
    (heatmap,) = heatmaps(viewer)
    facts = heatmap.metadata[METADATA_KEY]
    assert heatmap.name == f"Grad-CAM · {facts['target_name']} (top class) · tiny"
    assert heatmap.colormap.name == HEATMAP_COLORMAP and heatmap.opacity == DEFAULT_OPACITY
    assert heatmap.blending == "translucent" and heatmap.data.shape == (16, 24)
    np.testing.assert_allclose(world_edges(heatmap), world_edges(viewer.layers["tile"]))
    assert facts["image_layer"] == "tile" and facts["region"] == "whole layer"
    assert facts["target_name"] in ("background", "tissue")
    assert [layer.name for layer in viewer.layers] == ["tile", heatmap.name, "annotations"]
    assert viewer.layers.selection.active is heatmap
    assert widget.result.value.startswith(facts["target_name"] + " p=")
    assert "16x16 px inputs" in widget.result.value  # 64 x 96 px fed whole: a scale warning
    assert widget.progress.value == widget.progress.max
    assert widget.layer.choices[-1] == "4" and "tissue" in widget.target.choices


def test_rectangles_give_one_heatmap_each_over_their_crop(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile, scale=(0.7, 1.3), translate=(10, -25))
    edges = np.array([[10 + 0.7 * 7.5, -25 + 1.3 * 15.5], [10 + 0.7 * 39.5, -25 + 1.3 * 63.5]])
    (y0, x0), (y1, x1) = edges
    rectangle = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
    viewer.add_shapes([rectangle, rectangle + 3], shape_type="rectangle")
    widget.region.value = RECTANGLES
    widget.load_model()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    widget.target.value = "tissue"
    run(widget, qtbot)
    assert errors == []
    first, second = heatmaps(viewer)
    np.testing.assert_allclose(world_edges(first), edges, atol=1e-9)
    assert first.metadata[METADATA_KEY]["box"] == (8, 16, 40, 64)
    assert first.metadata[METADATA_KEY]["target_name"] == "tissue"
    assert second.metadata[METADATA_KEY]["region"] == "rectangle 1"


def test_field_of_view_explains_what_the_canvas_shows(make_widget, qtbot, errors):
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8)
    viewer, widget = make_widget(image, translate=(50, 20))
    camera = viewer.scene.camera
    camera.center = (0, 150, 170)
    camera.zoom = max(viewer.canvas.size) / 60
    widget.region.value = FIELD_OF_VIEW
    run(widget, qtbot)
    assert errors == []
    (heatmap,) = heatmaps(viewer)
    y0, x0, y1, x1 = heatmap.metadata[METADATA_KEY]["box"]
    half = np.asarray(viewer.canvas.size) / (2 * camera.zoom)
    assert abs(y0 - (100 - half[0])) <= 1 and abs(y1 - (100 + half[0])) <= 1
    assert abs(x0 - (150 - half[1])) <= 1 and abs(x1 - (150 + half[1])) <= 1


def test_stack_explains_the_current_slice(make_widget, qtbot, errors):
    stack = np.zeros((3, 40, 40), np.uint16)
    stack[2] = np.random.default_rng(0).integers(0, 60000, (40, 40))
    viewer, widget = make_widget(stack)
    viewer.dims.current_step = (2, 0, 0)
    run(widget, qtbot)
    assert errors == []
    (heatmap,) = heatmaps(viewer)
    assert heatmap.ndim == 2 and heatmap.metadata[METADATA_KEY]["slice"] == (2,)


def test_multiscale_uses_the_level_matching_the_model(make_widget, qtbot, errors):
    fine = np.random.default_rng(0).random((128, 128), dtype=np.float32)
    levels = [fine, fine[::2, ::2]]
    viewer, widget = make_widget(levels, multiscale=True, metadata={"mpp": 0.5}, scale=(3, 3))
    run(widget, qtbot)
    assert errors == []
    (heatmap,) = heatmaps(viewer)
    assert heatmap.data.shape == (16, 16)
    assert heatmap.metadata[METADATA_KEY]["stride"] == (8.0, 8.0)
    np.testing.assert_allclose(world_edges(heatmap), world_edges(viewer.layers[0]))


@pytest.mark.parametrize(
    ("image", "bad_spec", "message"),
    [
        (np.ones((8, 8, 3), np.uint8), None, "needs at least"),
        (np.full((32, 32), np.nan, np.float32), None, "NaN"),
        (np.eye(32), "no_such_module:factory", "Could not load the model"),
    ],
    ids=["too-small", "nan", "bad-spec"],
)
def test_errors_are_notified_and_add_no_layer(make_widget, image, bad_spec, message, qtbot, errors):
    viewer, widget = make_widget(image)
    widget.model_spec = bad_spec or widget.model_spec
    run(widget, qtbot)
    assert len(errors) == 1 and message in errors[0]
    assert len(viewer.layers) == 1 and widget.result.value == errors[0]  # in full, in the dock
    assert widget.progress.value == 0  # reset, not stuck half-way
    assert widget.explain_button.enabled


def test_without_an_image_layer_nothing_runs(make_widget, errors):
    _, widget = make_widget()
    widget.explain()
    assert not widget.running and "add an image layer" in errors[0]


def test_explain_is_disabled_while_running(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile)
    widget.explain_button.clicked.emit()
    assert widget.running and not widget.explain_button.enabled
    assert widget.cancel_button.enabled
    widget.explain()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert len(heatmaps(viewer)) == 1 and widget.explain_button.enabled


def test_cancel_stops_the_job_without_layers(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile)
    square = np.array([[0, 0], [0, 20], [20, 20], [20, 0]], dtype=float)
    viewer.add_shapes([square + i for i in range(20)], shape_type="rectangle")
    widget.region.value = RECTANGLES
    widget.explain_button.clicked.emit()
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert heatmaps(viewer) == [] and widget.result.value == "cancelled"


def test_load_model_lists_layers_and_classes(make_widget, qtbot, errors):
    _, widget = make_widget()
    widget.load_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.target.choices == ("predicted", "background", "tissue")
    assert widget.layer.choices[0] == "auto" and "4" in widget.layer.choices
    widget.model_spec = "demo"
    assert widget.target.choices == ("predicted",)


def test_bundled_picker_offers_both_demos_and_follows_the_spec(make_widget, qtbot, errors):
    from napari_gradcam.models.bundled import BUNDLED

    _, widget = make_widget()
    assert tuple(BUNDLED) == widget_module.BUNDLED_MODELS
    assert widget.bundled.value == widget_module.OWN_MODEL  # the fixture's own test model
    widget.bundled.value = "demo-vit"
    assert widget.model_spec == "demo-vit"
    widget.load_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert errors == []
    assert widget.target.choices == ("predicted", "background", "stroma", "nuclei-dense")
    assert "blocks.2.norm1" in widget.layer.choices  # the ViT demo's default layer
    widget.model_spec = "demo"
    assert widget.bundled.value == "demo" and widget.target.choices == ("predicted",)
    widget.model_spec = "my_model.py:make"
    assert widget.bundled.value == widget_module.OWN_MODEL


def test_tta_gives_the_mean_over_flips_and_says_so(make_widget, tile, qtbot, errors):
    from napari_gradcam.core.explain.pipeline import explain
    from napari_gradcam.models.cache import cached_model

    viewer, widget = make_widget(tile, name="tile")
    widget.tta.value = True
    run(widget, qtbot)
    widget.tta.value = False
    run(widget, qtbot)
    assert errors == []
    with_tta, plain = heatmaps(viewer)
    assert " TTA " in with_tta.name and " TTA " not in plain.name
    assert with_tta.metadata[METADATA_KEY]["tta"] and not plain.metadata[METADATA_KEY]["tta"]
    loaded = cached_model(widget.model_spec, str(widget.weights.value))
    target = with_tta.metadata[METADATA_KEY]["target_index"]
    expected = explain(loaded, tile, target=target, tta=True).cam
    np.testing.assert_allclose(with_tta.data, to_display(expected)[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(with_tta.data, plain.data, rtol=0.01)


def test_bfloat16_is_offered_for_masked_forward_methods_and_recorded(
    make_widget, tile, qtbot, errors
):
    from napari_gradcam.core.explain.pipeline import explain
    from napari_gradcam.models.cache import cached_model

    viewer, widget = make_widget(tile, name="tile")
    assert widget.bfloat16.native.isHidden()  # gradcam: nothing to speed up
    widget.bfloat16.value = True
    run(widget, qtbot)  # a box left ticked does not apply to gradcam
    widget.method.value = "scorecam"
    assert not widget.bfloat16.native.isHidden()
    run(widget, qtbot)
    assert errors == []
    plain, rounded = heatmaps(viewer)
    assert " bf16 " not in plain.name and not plain.metadata[METADATA_KEY]["bfloat16"]
    assert (
        rounded.name.startswith("Score-CAM bf16 · ") and rounded.metadata[METADATA_KEY]["bfloat16"]
    )
    loaded = cached_model(widget.model_spec, str(widget.weights.value))
    target = rounded.metadata[METADATA_KEY]["target_index"]
    expected = explain(loaded, tile, method="scorecam", target=target, bfloat16=True).cam
    np.testing.assert_allclose(rounded.data, to_display(expected)[0], rtol=1e-5, atol=1e-6)


def test_closing_the_dock_mid_run_adds_no_layer(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile, name="tile")
    widget.explain_button.clicked.emit()
    viewer.window.remove_dock_widget(widget.native)
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert heatmaps(viewer) == [] and "annotations" not in viewer.layers
    assert widget.result.value == "stopped: the Grad-CAM dock was closed" and errors == []
