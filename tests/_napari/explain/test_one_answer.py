"""What a person sees after Explain: one readable answer, named for what it is, and why not."""

import functools

import numpy as np
import pytest
from qtpy.QtGui import QShortcut

from napari_gradcam._napari.explain import widget as widget_module
from napari_gradcam._napari.explain.map_stack import REPLACE
from napari_gradcam._napari.heatmap_style import CLEAR_BELOW, OPAQUE_FROM
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.result_layers import METADATA_KEY

TIMEOUT_MS = 30_000


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    monkeypatch.setattr(widget_module, "show_warning", lambda _message: None)
    return shown


@pytest.fixture
def make_widget(make_gradcam_widget):
    return functools.partial(make_gradcam_widget, tiled=False)


def run(widget, qtbot) -> None:
    widget.explain_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def heatmaps(viewer) -> list:
    return [layer for layer in viewer.layers if HeatmapRecord.of(layer) is not None]


def test_three_explains_leave_one_visible_selected_readable_map(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile, name="H&E skin (CMU-1-Small-Region)")
    qtbot.waitUntil(lambda: "tissue" in widget.target.choices, timeout=TIMEOUT_MS)
    for method, target in [
        ("gradcam", "predicted"),
        ("scorecam", "tissue"),
        ("layercam", "tissue"),
    ]:
        widget.method.value, widget.target.value = method, target
        run(widget, qtbot)
    assert errors == []
    maps = heatmaps(viewer)
    assert [layer.visible for layer in maps] == [False, False, True]
    newest = maps[-1]
    assert viewer.layers.selection.active is newest
    names = [layer.name for layer in maps]
    assert len(set(names)) == 3 and all(name.endswith(" · tiny") for name in names)
    assert names[1:] == ["Score-CAM · tissue · tiny", "LayerCAM · tissue · tiny"]
    assert names[0].startswith("Grad-CAM · ") and names[0].endswith(" (top class) · tiny")
    assert all(len(name) <= 45 for name in names)
    record = HeatmapRecord.of(newest)
    assert record.image_layer == "H&E skin (CMU-1-Small-Region)"  # in the record, not the name
    assert [layer.name for layer in viewer.layers][-1] == "annotations"
    assert len(viewer.layers) == 5  # the image, three maps, the annotations: no helper layers
    # readable: a colour bar, 0-1 of the map's range, low values clear, the top opaque
    assert newest.colorbar.visible and tuple(newest.contrast_limits) == (0.0, 1.0)
    assert newest.data.min() == 0.0 and newest.data.max() == pytest.approx(1.0)
    assert record.raw_range[1] > record.raw_range[0] and "0-1" in record.normalisation
    alpha = newest.colormap.map(np.array([0.0, CLEAR_BELOW, OPAQUE_FROM, 1.0]))[:, 3]
    np.testing.assert_allclose(alpha, [0.0, 0.0, 1.0, 1.0], atol=1e-6)


def test_replace_removes_the_earlier_map_once_the_new_one_is_done(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile, name="tile")
    run(widget, qtbot)
    (first,) = heatmaps(viewer)
    widget.earlier.value = REPLACE
    widget.method.value = "xgradcam"
    run(widget, qtbot)
    (second,) = heatmaps(viewer)
    assert second is not first and second.visible and second.name.startswith("XGrad-CAM · ")
    assert errors == []


def test_a_failed_run_keeps_and_shows_the_earlier_map(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile, name="tile")
    run(widget, qtbot)
    widget.earlier.value = REPLACE
    widget.layer.value = "auto"
    widget.model_spec = "no_such_module:factory"
    run(widget, qtbot)
    (kept,) = heatmaps(viewer)
    assert kept.visible and len(errors) == 1 and widget.result.value == errors[0]


def test_the_opacity_control_sets_the_newest_map(make_widget, tile, qtbot, errors):
    viewer, widget = make_widget(tile, name="tile")
    widget.opacity.value = 0.4
    run(widget, qtbot)
    (heatmap,) = heatmaps(viewer)
    assert heatmap.opacity == pytest.approx(0.4)
    widget.opacity.value = 0.9
    assert heatmap.opacity == pytest.approx(0.9)


def test_classes_are_listed_from_the_card_without_loading(make_widget, qtbot, monkeypatch):
    from napari_gradcam.models import cache

    loads: list[str] = []
    monkeypatch.setattr(cache, "cached_model", lambda *args, **kw: loads.append(args))
    _viewer, widget = make_widget()
    qtbot.waitUntil(lambda: "tissue" in widget.target.choices, timeout=TIMEOUT_MS)
    assert widget.target.choices == ("predicted", "background", "tissue") and loads == []
    widget.weights.value = None
    widget.model_spec = "demo-vit"
    qtbot.waitUntil(lambda: "stroma" in widget.target.choices, timeout=TIMEOUT_MS)
    assert widget.target.choices == ("predicted", "background", "stroma", "nuclei-dense")
    assert loads == []


def test_a_chosen_target_is_kept_or_its_reset_is_said(make_widget, qtbot):
    _viewer, widget = make_widget()
    widget.weights.value = None
    widget.model_spec = "demo-vit"
    qtbot.waitUntil(lambda: "stroma" in widget.target.choices, timeout=TIMEOUT_MS)
    widget.target.value = "stroma"
    widget.bundled.value = "demo"  # the CNN demo has a stroma class too
    qtbot.waitUntil(lambda: "stroma" in widget.target.choices, timeout=TIMEOUT_MS)
    assert widget.target.value == "stroma" and "reset" not in widget.result.value
    widget.model_spec = widget_module.__file__  # no card: classes unknown, nothing said yet
    assert widget.target.value == "predicted" and "reset" not in widget.result.value
    widget.model_spec = "demo"
    qtbot.waitUntil(lambda: widget.target.value == "stroma", timeout=TIMEOUT_MS)


def test_a_target_the_new_model_lacks_is_reset_with_a_word(make_widget, qtbot, tiny_weights):
    _viewer, widget = make_widget()
    qtbot.waitUntil(lambda: "tissue" in widget.target.choices, timeout=TIMEOUT_MS)
    widget.target.value = "tissue"
    widget.weights.value = None
    widget.model_spec = "demo"
    qtbot.waitUntil(lambda: "stroma" in widget.target.choices, timeout=TIMEOUT_MS)
    assert widget.target.value == "predicted"
    assert 'target reset to "predicted": demo has no class "tissue"' in widget.result.value


def test_an_unexpected_error_is_logged_with_its_traceback_and_named(
    make_widget, tile, qtbot, errors, monkeypatch, tmp_path
):
    from napari_gradcam._napari.explain import job as explain_job

    def broken(*_args):
        raise RuntimeError("a bug deep in the stack")

    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(explain_job, "explain_box", broken)
    viewer, widget = make_widget(tile, name="tile")
    run(widget, qtbot)
    log = tmp_path / "state" / "errors.log"
    message = widget.result.value
    assert "unexpected error" in message and "RuntimeError: a bug deep in the stack" in message
    assert str(log) in message and errors == [message]
    assert "Traceback" in log.read_text() and "broken" in log.read_text()
    assert widget.progress.value == 0 and heatmaps(viewer) == []
    assert widget.explain_button.enabled


def test_long_messages_are_shown_whole_in_the_dock(make_widget, qtbot, errors):
    _viewer, widget = make_widget()
    widget.explain()  # no image layer
    label = widget.result.native
    assert label.wordWrap() and label.text() == errors[0]
    assert errors[0].startswith("Grad-CAM: add an image layer first (File > Open Sample")


def test_explain_and_cancel_have_dock_shortcuts(make_widget):
    _viewer, widget = make_widget()
    keys = {s.key().toString() for s in widget.native.findChildren(QShortcut)}
    assert {"Ctrl+Return", "Esc"} <= keys
    assert "Ctrl+Enter" in widget.explain_button.tooltip and "Esc" in widget.cancel_button.tooltip


def test_every_control_has_a_tooltip_and_advanced_options_are_folded(make_widget):
    _viewer, widget = make_widget()
    controls = [*widget, *widget.advanced]
    unexplained = [
        control.label or control.name
        for control in controls
        if control not in (widget.advanced, widget.progress) and not control.tooltip
    ]
    assert unexplained == []
    assert widget.advanced.native.isHidden() and widget.layer.label == "model layer"
    widget.show_advanced.value = True
    assert not widget.advanced.native.isHidden()


def test_a_heatmap_names_its_region_when_not_the_whole_image(make_widget, tile, qtbot, errors):
    from napari_gradcam._napari.regions import RECTANGLES

    viewer, widget = make_widget(tile, name="tile")
    square = np.array([[0, 0], [0, 40], [40, 40], [40, 0]], dtype=float)
    viewer.add_shapes([square, square + 10], shape_type="rectangle", name="boxes")
    widget.region.value = RECTANGLES
    qtbot.waitUntil(lambda: "tissue" in widget.target.choices, timeout=TIMEOUT_MS)
    widget.target.value = "tissue"
    run(widget, qtbot)
    names = [layer.name for layer in heatmaps(viewer)]
    assert names == [
        "Grad-CAM · tissue · tiny · rectangle 0",
        "Grad-CAM · tissue · tiny · rectangle 1",
    ]
    assert all(layer.visible for layer in heatmaps(viewer))  # one run's maps all stay shown
    assert METADATA_KEY in viewer.layers.selection.active.metadata


def test_the_newest_map_stays_shown_in_a_dock_opened_from_the_plugins_menu(
    make_napari_viewer, tile, tiny_spec, tiny_weights, qtbot, errors
):
    """napari hands such a dock a proxy of the viewer: its layers are new proxies each time."""
    viewer = make_napari_viewer()
    viewer.add_image(tile, name="tile")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-gradcam", "Grad-CAM")
    widget.model_spec, widget.weights.value = tiny_spec, tiny_weights
    widget.tiles.tiled.value = False
    for _ in range(2):
        run(widget, qtbot)
    first, second = heatmaps(viewer)
    assert (first.visible, second.visible) == (False, True) and errors == []
    assert viewer.layers.selection.active is second
