"""The Grad-CAM dock's method options: one control per option, built from the method's fields."""

import numpy as np
import pytest

from napari_gradcam._napari.explain import widget as widget_module
from napari_gradcam._napari.explain.widget import GradCamWidget
from napari_gradcam._napari.heatmap_style import to_display
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.result_layers import METADATA_KEY
from napari_gradcam.core.explain.method_options import option_specs
from napari_gradcam.core.explain.methods import METHODS
from napari_gradcam.core.explain.methods.attention import AttentionOptions, RolloutOptions
from napari_gradcam.core.settings import ExplainSettings
from tests.core.he_tiles import he_tile
from tests.test_cli_attention_options import option_cases

TIMEOUT_MS = 60_000
BOX = Box(0, 0, 8, 8, "region")


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    return shown


@pytest.fixture
def vit_widget(make_napari_viewer, qtbot):
    """A viewer with an H&E tile and the Grad-CAM dock set to the ViT demo (loaded)."""
    viewer = make_napari_viewer()
    viewer.add_image(he_tile("dense"), name="tile")
    widget = GradCamWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Grad-CAM")
    widget.bundled.value = "demo-vit"
    widget.load_model()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    return viewer, widget


def shown(control) -> bool:
    """Whether the control is shown in the dock (the test viewer's window stays hidden)."""
    return not control.native.isHidden()


def explain_with(widget, qtbot, method: str, **controls) -> HeatmapRecord:
    widget.method.value = method
    for name, value in controls.items():
        widget.option_controls[name].value = value
    widget.explain()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    layer = widget._viewer.layers[-2]  # the annotations layer comes last
    return layer, HeatmapRecord.from_facts(layer.metadata[METADATA_KEY])


def test_each_option_is_shown_only_for_the_method_that_takes_it(vit_widget) -> None:
    _viewer, widget = vit_widget
    expected = {
        "gradcam": (False, False),
        "rollout": (True, False),
        "attention": (False, True),
        "transformer-attribution": (False, False),
    }
    discard, head = (widget.option_controls[k] for k in ("discard_ratio", "attention_head"))
    for method, shows in expected.items():
        widget.method.value = method
        assert (shown(discard), shown(head)) == shows
    for method in METHODS.values():
        widget.method.value = method.name
        taken = {spec.key for _, spec in option_specs(method.options)}
        assert {k for k, c in widget.option_controls.items() if shown(c)} == taken
    assert (head.min, head.max) == (-1, 2), (
        "the mean, then the ViT demo's 3 heads of its last block"
    )
    assert head.value == -1 and head.native.text() == "mean of heads"  # what the user reads
    widget.method.value = "occlusion"
    assert widget.option_controls["occlusion_window"].native.text() == "auto"


def test_discard_ratio_and_head_reach_explain_and_the_record(vit_widget, qtbot, errors) -> None:
    from napari_gradcam.core.explain.pipeline import explain
    from napari_gradcam.models.cache import cached_model

    _viewer, widget = vit_widget
    loaded, tile = cached_model("demo-vit", None), he_tile("dense")
    layer, record = explain_with(widget, qtbot, "rollout", discard_ratio=0.5)
    assert record.settings.options == RolloutOptions(discard_ratio=0.5)
    assert layer.name.startswith("Attention rollout discard 0.5 · ")
    expected = explain(loaded, tile, method="rollout", options=RolloutOptions(0.5)).cam
    np.testing.assert_allclose(layer.data, to_display(expected)[0], rtol=1e-5, atol=1e-6)
    plain = to_display(explain(loaded, tile, method="rollout").cam)[0]
    assert not np.allclose(layer.data, plain, rtol=0.01)
    layer, record = explain_with(widget, qtbot, "attention", attention_head=1)
    assert record.settings.options == AttentionOptions(head=1) and "head 1" in layer.name
    expected = explain(loaded, tile, method="attention", options=AttentionOptions(1)).cam
    np.testing.assert_allclose(layer.data, to_display(expected)[0], rtol=1e-5, atol=1e-6)
    layer, record = explain_with(widget, qtbot, "attention", attention_head=-1)
    assert record.settings.options == AttentionOptions() and "discard" not in layer.name
    expected = explain(loaded, tile, method="attention").cam  # the mean of the heads
    np.testing.assert_allclose(layer.data, to_display(expected)[0], rtol=1e-5, atol=1e-6)
    layer, record = explain_with(widget, qtbot, "gradcam")  # the options stay set, unused
    assert (
        record.settings.options == METHODS["gradcam"].options()
        and layer.name == "Grad-CAM · nuclei-dense (top class) · demo-vit"
    )
    assert errors == []


def test_options_survive_the_metadata_and_old_records_read_as_defaults() -> None:
    facts = {
        "model": "demo-vit",
        "method": "rollout",
        "target_name": "stroma",
        "image_layer": "tile",
        "box": (0, 0, 96, 96),
        "stride": (8.0, 8.0),
        "origin": (0.0, 0.0),
    }
    assert HeatmapRecord.from_facts(facts).settings.options == RolloutOptions()
    record = HeatmapRecord.from_facts({**facts, "discard_ratio": 0.9})
    assert record.settings.options == RolloutOptions(discard_ratio=0.9) and not record.extra
    assert record.to_facts()["discard_ratio"] == 0.9
    assert "attention_head" not in record.to_facts()


def test_an_old_record_of_each_options_method_reads_as_it_was_written() -> None:
    """Metadata of earlier versions: the options flat among the facts, by their keys."""
    base = {
        "model": "demo-vit",
        "target_name": "stroma",
        "image_layer": "tile",
        "box": (0, 0, 96, 96),
        "stride": (8.0, 8.0),
        "origin": (0.0, 0.0),
        "layer": "blocks.2.attn",
        "tta": False,
        "bfloat16": False,
    }
    old = {**base, "method": "attention", "attention_head": 2}
    record = HeatmapRecord.from_facts(old)
    assert record.settings == ExplainSettings(
        "attention", "blocks.2.attn", "stroma", options=AttentionOptions(2)
    )
    written = record.to_facts()
    assert {key: written[key] for key in old} == old and not record.extra


@pytest.mark.parametrize(("method", "name", "_flag", "value"), option_cases())
def test_every_option_has_a_control_that_reaches_the_record(
    make_napari_viewer, method, name, _flag, value
) -> None:
    widget = GradCamWidget(make_napari_viewer())
    widget.method.value = method
    key = dict(option_specs(METHODS[method].options))[name].key
    assert shown(widget.option_controls[key])
    widget.option_controls[key].value = value
    settings = widget.settings()
    assert getattr(settings.options, name) == value
    explained = settings.replace(target="stroma")  # a record's target: the class explained
    record = HeatmapRecord("m", None, explained, "stroma", (1.0, 1.0), (0.0, 0.0), "t", BOX)
    assert HeatmapRecord.from_facts(record.to_facts()).settings == explained
