import time

import numpy as np
import pytest
from napari.layers import Image

from napari_gradcam._napari.explain.widget import GradCamWidget
from napari_gradcam._napari.plane import Plane
from napari_gradcam._napari.records import PER_TILE, HeatmapRecord
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.result_layers import METADATA_KEY
from napari_gradcam._napari.trust.job import TrustJob, run_trust_job, tile_at
from napari_gradcam._napari.trust.layers import CONTRAST_KEY, FEATURES_KEY, TRUST_KEY
from napari_gradcam._napari.trust.widget import NO_HEATMAP, TrustWidget
from napari_gradcam.core.progress import Progress, run_to_end
from napari_gradcam.core.settings import ExplainSettings
from tests._napari.test_result_layers import world_edges
from tests._napari.trust.dock import TIMEOUT_MS, click, wait
from tests.core.he_tiles import he_tile

PLACEMENT = {"scale": (0.5, 0.5), "translate": (100.0, -40.0)}


@pytest.fixture
def checked(make_napari_viewer, qtbot):
    """A viewer with an H&E tile, its Grad-CAM heatmap and the trust dock (model loaded)."""

    def make(tile: np.ndarray) -> tuple:
        viewer = make_napari_viewer()
        viewer.add_image(tile, name="tile", **PLACEMENT)
        explainer = GradCamWidget(viewer)
        explainer.model_spec = "demo"
        explainer.explain()
        wait(explainer, qtbot)
        widget = TrustWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Grad-CAM trust & compare")
        widget.reset_choices()
        wait(widget, qtbot)
        return viewer, widget, widget.heatmap.value

    return make


def added(viewer, key: str) -> list[Image]:
    return [layer for layer in viewer.layers if key in layer.metadata]


def test_trust_report_shows_verdict_plot_and_records_it(checked, qtbot, messages) -> None:
    _viewer, widget, heatmap = checked(he_tile("dense_edge"))
    assert heatmap.metadata[METADATA_KEY]["image_layer"] == "tile"
    widget.sanity_steps.value = 2
    click(widget.trust_button, widget, qtbot)
    assert messages == {"error": [], "warning": []}
    record = heatmap.metadata[TRUST_KEY]
    assert record["noise"]["blank"] is False and record["target_name"] == "nuclei-dense"
    assert len(record["sanity"]["steps"]) == 2
    assert record["rating"].upper() in widget.verdict.value
    assert record["verdict"] in widget.verdict.value and "What next:" in widget.verdict.value
    assert "rank correlation" in widget.details.value and "AUC" in widget.details.value
    assert not widget.details_fold.expanded, "the numbers wait under the details fold"
    widget.details_fold.toggle.clicked.emit()
    assert widget.details_fold.expanded and not widget.details.native.isHidden()
    axes = widget.plot.figure.axes[0]
    assert len(axes.lines) == 4 and len(axes.collections) == 2  # curves and shaded gaps
    assert axes.get_ylabel() == "probability" and axes.get_xlabel().startswith("share of pixels")
    (legend,) = widget.plot.figure.legends  # one, below the axes (never over the curves)
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[0].startswith("hide, map order") and labels[1].startswith("hide, random order")
    assert widget.status.value.startswith("trust report: ")
    assert widget.progress.value == widget.progress.max


def test_a_saturated_tile_draws_curves_that_move(checked, qtbot, messages) -> None:
    _viewer, widget, heatmap = checked(he_tile("dense_saturated"))
    click(widget.trust_button, widget, qtbot)
    record = heatmap.metadata[TRUST_KEY]
    assert record["probability"] > 0.95 and record["faithfulness"]["measure"] == "logit"
    axes = widget.plot.figure.axes[0]
    assert axes.get_ylabel() == "score (logit)" and len(widget.plot.figure.legends) == 1
    assert all(np.ptp(line.get_ydata()) > 1.0 for line in axes.lines), "no flat line"


def test_every_job_ends_at_full_progress(checked, qtbot, messages) -> None:
    _viewer, widget, _heatmap = checked(he_tile("dense_edge"))
    widget.features_fold.expanded = True
    click(widget.features_button, widget, qtbot)
    assert widget.status.value.startswith("added 1 layer(s)")
    assert widget.progress.value == widget.progress.max


def test_an_unexpected_error_is_shown_in_full(checked, qtbot, messages, monkeypatch) -> None:
    _viewer, widget, heatmap = checked(he_tile("dense_edge"))

    def broken(*_args, **_kwargs):
        yield Progress(1, 4, "noise indicators measured")
        raise ZeroDivisionError("a bug deep in the report " + "with a long explanation " * 8)

    monkeypatch.setattr("napari_gradcam.core.trust.report.iter_trust_report", broken)
    click(widget.trust_button, widget, qtbot)
    status = widget.status.value
    assert status.startswith("failed: unexpected error while running trust in the trust dock")
    assert "ZeroDivisionError: a bug deep in the report" in status
    assert status.count("with a long explanation") == 8, "the message is never cut"
    assert widget.status.native.wordWrap()
    assert messages["error"][-1] == f"Grad-CAM trust: {status.removeprefix('failed: ')}"
    assert TRUST_KEY not in heatmap.metadata


def test_the_dock_is_compact_with_a_tooltip_on_every_control(checked, qtbot, messages) -> None:
    _viewer, widget, _heatmap = checked(he_tile("dense_edge"))
    assert not widget.advanced.expanded and not widget.compare_fold.expanded
    assert widget.native.sizeHint().height() < 500, "fits beside the other docks on 1080 px"
    names = (
        "heatmap trust_button baseline sanity_steps feature_layer features_button sweep_button "
        "other_class contrast_button methods classes compare_button cancel_button"
    )
    assert all(getattr(widget, name).tooltip for name in names.split())


def test_a_blank_tile_is_flagged_and_dimmed(checked, qtbot, messages) -> None:
    _viewer, widget, heatmap = checked(he_tile("glass"))
    click(widget.trust_button, widget, qtbot)
    assert heatmap.metadata[TRUST_KEY]["rating"] == "blank tile"
    assert "BLANK TILE" in widget.verdict.value and "almost no tissue" in widget.verdict.value
    assert "Pan to a tile with tissue" in widget.verdict.value
    assert "empty glass" in widget.details.value
    assert heatmap.name.endswith("[no tissue]") and heatmap.opacity < 0.2
    assert messages["warning"] and "covers no tissue" in messages["warning"][0]


def test_feature_maps_are_a_channel_stack_aligned_with_the_tile(checked, qtbot, messages) -> None:
    viewer, widget, _heatmap = checked(he_tile("dense_edge"))
    click(widget.features_button, widget, qtbot)
    (stack,) = added(viewer, FEATURES_KEY)
    assert stack.data.shape == (64, 12, 12) and stack.data.max() == pytest.approx(1.0)
    np.testing.assert_allclose(world_edges(stack), world_edges(viewer.layers["tile"]))
    facts = stack.metadata[FEATURES_KEY]
    assert facts["layer"] == "features.14" and len(facts["channels"]) == 64
    assert np.all(np.diff(facts["contributions"]) <= 0)
    assert widget.channels.value.startswith(
        f"features.14 for nuclei-dense, slider 0 first: {facts['channels'][0]} ("
    )
    assert viewer.dims.nsteps[0] == 64, "channels scroll with the slider"
    assert viewer.dims.axis_labels[0] == "channel"
    assert viewer.layers.extent.units is not None, "napari would say: inconsistent units"


def test_sweep_contrast_and_comparison_layers_are_aligned(checked, qtbot, messages) -> None:
    viewer, widget, heatmap = checked(he_tile("dense_edge"))
    image_edges = world_edges(viewer.layers["tile"])
    click(widget.sweep_button, widget, qtbot)
    widget.other_class.value = "stroma"
    click(widget.contrast_button, widget, qtbot)
    widget.methods.value = ["gradcam", "eigencam"]
    widget.classes.value = ["predicted", "stroma"]
    click(widget.compare_button, widget, qtbot)
    assert messages["error"] == []
    maps = [layer for layer in added(viewer, METADATA_KEY) if layer is not heatmap]
    assert [layer.data.shape[0] for layer in maps[:4]] == [96, 48, 24, 12]
    assert maps[3].name == "tile gradcam nuclei-dense @ features"
    assert len(maps) == 8
    (contrast,) = added(viewer, CONTRAST_KEY)
    assert contrast.contrast_limits[0] == -contrast.contrast_limits[1]
    assert contrast.name == "tile gradcam nuclei-dense - stroma"
    for layer in [*maps, contrast]:
        np.testing.assert_allclose(world_edges(layer), image_edges, atol=1e-9)
    assert viewer.layers.extent.units is not None, "napari would say: inconsistent units"


def test_bad_requests_say_what_to_do(make_napari_viewer, checked, qtbot, messages) -> None:
    empty = TrustWidget(make_napari_viewer())
    empty.run("trust")
    assert messages["error"] == [f"Grad-CAM trust: {NO_HEATMAP}"]
    viewer, widget, heatmap = checked(he_tile("dense_edge"))
    widget.other_class.value = "nuclei-dense"
    click(widget.contrast_button, widget, qtbot)
    assert "other than 'nuclei-dense'" in messages["error"][-1]
    viewer.layers.remove("tile")
    click(widget.trust_button, widget, qtbot)
    assert "no longer in the viewer" in messages["error"][-1]
    assert TRUST_KEY not in heatmap.metadata


def test_a_cancelled_report_adds_nothing(checked, qtbot, messages, monkeypatch) -> None:
    _viewer, widget, heatmap = checked(he_tile("dense_edge"))

    def endless(*_args, **_kwargs):
        while True:
            time.sleep(0.01)
            yield Progress(1, 4, "still working")

    monkeypatch.setattr("napari_gradcam.core.trust.report.iter_trust_report", endless)
    widget.trust_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.status.value == "still working", timeout=TIMEOUT_MS)
    widget.cancel_button.clicked.emit()
    wait(widget, qtbot)
    assert widget.status.value == "cancelled" and TRUST_KEY not in heatmap.metadata
    assert widget.trust_button.enabled and not widget.cancel_button.enabled


def test_a_tiled_record_narrows_to_the_tile_around_a_point_inside_its_region() -> None:
    facts = {
        "model": "demo",
        "method": "gradcam",
        "target_name": "stroma",
        "image_layer": "slide",
        "box": (10, 20, 300, 400),
        "stride": (8.0, 8.0),
        "origin": (10.0, 20.0),
        "tiles": {"total": 12, "explained": 9, "size": (96.0, 96.0)},
    }
    source = HeatmapRecord.from_facts(facts)
    assert source.tiles.size == (96.0, 96.0)
    centred = tile_at(source, (150.2, 200.7)).box
    assert (centred.y0, centred.x0, centred.y1, centred.x1) == (102, 153, 198, 249)
    corner = tile_at(source, (0, 1000)).box  # moved inside the region
    assert (corner.y0, corner.x0, corner.y1, corner.x1) == (10, 304, 106, 400)
    narrow = tile_at(HeatmapRecord.from_facts({**facts, "box": (0, 0, 50, 400)}), (25, 50))
    assert (narrow.box.y0, narrow.box.y1) == (0, 50)  # a region thinner than a tile: cut
    unsized = HeatmapRecord.from_facts({**facts, "target_name": PER_TILE, "tiles": {"total": 4}})
    assert unsized.settings.target is None
    assert tile_at(unsized, (100, 100)) == unsized  # before sizes


def test_a_region_too_large_for_a_trust_report_says_what_to_do() -> None:
    pixels = np.zeros((1100, 1000, 3), np.uint8)
    pixels[::7] = 120
    plane = Plane((pixels,), ((1.0, 1.0),))
    box = Box(0, 0, 1100, 1000)
    placement = ((8.0, 8.0), (0.0, 0.0))
    source = HeatmapRecord(
        "demo", None, ExplainSettings(target="stroma"), "stroma", *placement, "big", box
    )
    outcome = run_to_end(run_trust_job(TrustJob("trust", source, plane)))
    assert outcome.report is None
    assert "1100 x 1000 pixels" in outcome.error and "at most 1024 x 1024" in outcome.error


def test_closing_the_trust_dock_mid_run_adds_nothing(checked, qtbot, messages) -> None:
    viewer, widget, _heatmap = checked(he_tile("dense_edge"))
    before = list(viewer.layers)
    widget.features_button.clicked.emit()
    viewer.window.remove_dock_widget(widget.native)
    wait(widget, qtbot)
    assert list(viewer.layers) == before and messages["error"] == []
    assert widget.status.value == "stopped: the trust dock was closed"
