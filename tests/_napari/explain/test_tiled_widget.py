import threading
import time

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_gradcam._napari.explain import widget as widget_module
from napari_gradcam._napari.explain.job import ExplainJob, run_job
from napari_gradcam._napari.explain.tiled_job import TiledResult, TiledUpdate, TilingOptions
from napari_gradcam._napari.plane import Plane
from napari_gradcam._napari.regions import whole_layer_box
from napari_gradcam._napari.result_layers import METADATA_KEY
from napari_gradcam.core.progress import Progress, run_to_end
from napari_gradcam.core.settings import ExplainSettings
from tests._napari.test_result_layers import world_edges

TIMEOUT_MS = 60_000
MAX_DOCK_WIDTH = 420
"""Wider, and the dock would push the canvas aside (the table's columns need ~600 px)."""
GLASS = (241, 238, 243)


def slide_like(shape=(128, 192), tissue_rows=slice(32, None), seed=0) -> np.ndarray:
    """Glass with a block of textured pink-purple "tissue"."""
    rng = np.random.default_rng(seed)
    image = np.empty((*shape, 3), np.uint8)
    image[:] = GLASS
    block = image[tissue_rows, : shape[1] * 2 // 3]
    block[:] = rng.integers((120, 40, 100), (230, 150, 200), (*block.shape[:2], 3))
    return image


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    return shown


class BatchLog(list):
    """Batches explained so far, and a gate that holds the worker at its third batch until
    the test has acted (cancel, remove a layer), so the run cannot finish first."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def batches(monkeypatch) -> BatchLog:
    """Count the batches explained; each takes at least 50 ms (the tiny model is too quick to
    cancel or close a layer mid-run otherwise)."""
    from napari_gradcam.core.tiling import loop

    log = BatchLog()
    log.release()
    explain_tile_batch = loop.explain_tile_batch

    def slow(*args):
        log.append(1)
        if len(log) >= 3:
            log.gate.wait(timeout=TIMEOUT_MS / 1000)
        time.sleep(0.05)
        return explain_tile_batch(*args)

    monkeypatch.setattr(loop, "explain_tile_batch", slow)
    yield log
    log.release()


@pytest.fixture
def make_widget(make_gradcam_widget):
    return make_gradcam_widget


def tiled_heatmaps(viewer) -> list:
    return [layer for layer in viewer.layers if "tiles" in layer.metadata.get(METADATA_KEY, {})]


def live_layers(viewer) -> list:
    return [layer for layer in viewer.layers if METADATA_KEY in layer.metadata]


def start(widget, qtbot, updates: list | None = None) -> None:
    widget.explain_button.clicked.emit()
    if updates is not None:
        widget.runner.worker.yielded.connect(
            lambda e: isinstance(e, TiledUpdate) and updates.append(e)
        )


def finish(widget, qtbot) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_the_heatmap_fills_in_batch_by_batch(make_widget, qtbot, errors):
    viewer, widget = make_widget(slide_like(), scale=(0.7, 1.3), translate=(10, -25), name="s")
    filled: list[int] = []
    start(widget, qtbot)
    widget.runner.worker.yielded.connect(
        lambda e: (
            isinstance(e, TiledUpdate)
            and filled.append(np.count_nonzero(live_layers(viewer)[-1].data))
        )
    )
    finish(widget, qtbot)
    assert errors == []
    (heatmap,) = tiled_heatmaps(viewer)
    assert len(filled) >= 4 and filled == sorted(filled) and 0 < filled[1] < filled[-1]
    assert 0 < np.count_nonzero(heatmap.data) < filled[-1]  # the glass at its edges cleared
    facts = heatmap.metadata[METADATA_KEY]
    tiles = facts["tiles"]
    assert tiles["skipped"] > 0 and tiles["explained"] + tiles["skipped"] == tiles["total"]
    assert facts["stride"] == (4.0, 4.0) and facts["image_layer"] == "s"
    np.testing.assert_allclose(world_edges(heatmap), world_edges(viewer.layers["s"]))
    assert not heatmap.data[:8].any()  # glass above the tissue: skipped or cleared
    assert not heatmap.data[:, 33:].any() and heatmap.data[8:, :32].any()  # glass to its right
    assert "glass is never painted" in facts["normalisation"]
    assert heatmap.name == "Grad-CAM · each tile's class · tiny"
    assert facts["raw_range"][1] > 0 and 0.5 < heatmap.data.max() <= 1.0
    assert [layer.name for layer in viewer.layers] == ["s", heatmap.name, "annotations"]
    assert widget.result.value.startswith(f"{tiles['explained']} tiles (each tile's class), ")
    assert widget.progress.value == widget.progress.max
    widget.tiles.show_helpers.value = True  # asked for: the tissue and the tile centres
    assert viewer.layers["s tissue"].visible and viewer.layers["s tiles"].visible
    assert viewer.layers.selection.active is heatmap
    widget.tiles.show_helpers.value = False
    assert not viewer.layers["s tissue"].visible and not viewer.layers["s tiles"].visible


def test_the_table_sorts_and_jumps_to_a_tile(make_widget, qtbot, errors):
    viewer, widget = make_widget(slide_like(), scale=(2.0, 2.0), name="s")
    widget.tiles.show_helpers.value = True
    start(widget, qtbot)
    finish(widget, qtbot)
    table = widget.tiles.table
    assert widget.native.sizeHint().width() < MAX_DOCK_WIDTH  # the table scrolls instead
    points = viewer.layers["s tiles"]
    assert not table.isHidden() and table.model_.rowCount() == len(points.data) > 0
    assert set(points.features.columns) >= {"class", "probability", "margin", "tissue", "entropy"}
    column = list(table.model_.columns).index("probability")
    table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    top = table.model_.row_of(0)
    assert points.features["probability"][top] == points.features["probability"].max()
    table.select_row(0)
    y0, x0, y1, x1 = widget.tiles.features["box"][top]
    centre = 2.0 * np.array([(y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2])
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], centre)
    np.testing.assert_allclose(points.data[top] * 2.0, centre)
    assert points.selected_data == {top}


def test_the_tiles_export_to_qupath_where_they_lie_on_the_image(
    make_widget, qtbot, tmp_path, monkeypatch
):
    from napari_gradcam._napari.explain import tiled_review
    from napari_gradcam.core.regions.geojson import read_geojson

    said: list[str] = []
    monkeypatch.setattr(tiled_review, "show_warning", said.append)
    monkeypatch.setattr(tiled_review, "show_info", said.append)
    viewer, widget = make_widget(slide_like(), scale=(2.0, 2.0), translate=(5, 7), name="s")
    widget.tiles.show_helpers.value = True
    assert widget.tiles.export.native.isHidden()
    assert widget.tiles.export_tiles(tmp_path / "none.geojson") is None and "no tiles" in said[-1]
    start(widget, qtbot)
    finish(widget, qtbot)
    assert not widget.tiles.export.native.isHidden()
    path = tmp_path / "tiles.geojson"
    assert widget.tiles.export_tiles(path) is not None
    qtbot.waitUntil(lambda: widget.tiles.export.enabled, timeout=TIMEOUT_MS)  # done
    points = viewer.layers["s tiles"]
    assert said[-1] == f"wrote {len(points.data)} tiles to tiles.geojson"
    tiles = read_geojson(path, image_shape=(128, 192)).annotations
    assert len(tiles) == len(points.data) > 0
    for index, tile in enumerate(tiles):
        centre = tile.polygons[0].exterior.mean(axis=0)  # level-0 pixels, like the points
        np.testing.assert_allclose(centre, points.data[index])
        assert tile.label == points.features["class"][index]
        assert tile.measurements["entropy"] == pytest.approx(points.features["entropy"][index])
        assert tile.qupath.object_type == "tile"
    widget.tiles.export_tiles(path)
    qtbot.waitUntil(lambda: widget.tiles.export.enabled, timeout=TIMEOUT_MS)
    assert "tiles not exported" in said[-1] and "already exists" in said[-1]


def test_cancel_stops_within_a_batch_and_leaves_no_heatmap(make_widget, qtbot, errors, batches):
    viewer, widget = make_widget(slide_like((256, 384), slice(None)))
    updates: list = []
    batches.hold()
    start(widget, qtbot, updates)
    qtbot.waitUntil(lambda: len(updates) >= 2, timeout=TIMEOUT_MS)
    widget.cancel_button.clicked.emit()
    started = len(batches)
    batches.release()
    finish(widget, qtbot)
    assert len(batches) - started <= 1 and len(batches) < updates[-1].geometry.n_explained / 32
    assert live_layers(viewer) == [] and widget.result.value == "cancelled"
    assert widget.explain_button.enabled and errors == []


@pytest.mark.parametrize("removed", ["heatmap", "image"])
def test_removing_a_layer_mid_run_stops_cleanly(make_widget, qtbot, errors, removed, batches):
    viewer, widget = make_widget(slide_like((256, 384), slice(None)), name="s")
    updates: list = []
    batches.hold()
    start(widget, qtbot, updates)
    qtbot.waitUntil(lambda: len(updates) >= 2, timeout=TIMEOUT_MS)
    layer = live_layers(viewer)[0] if removed == "heatmap" else viewer.layers["s"]
    viewer.layers.remove(layer)
    batches.release()
    if removed == "heatmap":
        qtbot.waitUntil(lambda: len(updates) >= 3 or not widget.running, timeout=TIMEOUT_MS)
    finish(widget, qtbot)
    assert widget.result.value.startswith("stopped: ")
    assert live_layers(viewer) == [] and errors == []


def test_a_pyramid_is_tiled_on_the_level_of_the_models_mpp(make_widget, qtbot, errors):
    fine = slide_like((256, 384), slice(64, None))
    viewer, widget = make_widget(
        [fine, fine[::2, ::2]], multiscale=True, metadata={"mpp": 0.5}, name="p"
    )
    start(widget, qtbot)
    finish(widget, qtbot)
    (heatmap,) = tiled_heatmaps(viewer)
    facts = heatmap.metadata[METADATA_KEY]
    assert facts["pyramid_level"] == 1 and facts["stride"] == (8.0, 8.0)
    np.testing.assert_allclose(world_edges(heatmap), world_edges(viewer.layers["p"]))


@pytest.mark.parametrize("opened", ["in a test", "from the Plugins menu"])
def test_the_tissue_is_found_once_per_image(
    make_widget, make_napari_viewer, tiny_spec, tiny_weights, qtbot, errors, monkeypatch, opened
):
    from napari_gradcam._napari.explain import job as explain_job

    calls = []
    original = explain_job.find_tissue
    monkeypatch.setattr(explain_job, "find_tissue", lambda *a: calls.append(1) or original(*a))
    if opened == "in a test":
        viewer, widget = make_widget(slide_like(), name="s")
    else:  # the dock gets a proxy of the viewer: a new proxy of the image at each access
        viewer = make_napari_viewer()
        viewer.add_image(slide_like(), name="s")
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-gradcam", "Grad-CAM")
        widget.model_spec, widget.weights.value = tiny_spec, tiny_weights
    for _ in range(2):
        start(widget, qtbot)
        finish(widget, qtbot)
    assert len(calls) == 1 and len(tiled_heatmaps(viewer)) == 2


def test_the_job_yields_rows_and_returns_a_tiled_result(tiny_spec, tiny_weights):
    image = slide_like()
    plane = Plane((image,), ((1.0, 1.0),))
    job = ExplainJob(
        tiny_spec,
        tiny_weights,
        ExplainSettings(target="tissue"),
        plane=plane,
        boxes=(whole_layer_box(image.shape),),
        tiling=TilingOptions(batch_size=16),
    )
    steps = []
    outcome = run_to_end(run_job(job), steps.append)
    (result,) = outcome.results
    assert isinstance(result, TiledResult) and outcome.tissue is not None
    rows = [s for s in steps if isinstance(s, TiledUpdate) and s.rows.size]
    assert len(rows) == -(-result.geometry.n_explained // 16)
    assert result.cam.shape == (32, 48) and result.settings.target == "tissue"
    assert set(result.tiles["target_index"]) == {1}
    last = rows[-1]
    np.testing.assert_allclose(result.cam[last.first_row :][: len(last.rows)], last.rows)


def test_glass_only_gives_an_empty_map_and_says_so(make_widget, qtbot, errors):
    glass = np.clip(
        np.array(GLASS) + np.random.default_rng(0).normal(0, 2, (64, 96, 3)), 0, 255
    ).astype(np.uint8)
    viewer, widget = make_widget(glass, name="g")
    widget.tiles.show_helpers.value = True
    start(widget, qtbot)
    finish(widget, qtbot)
    (heatmap,) = tiled_heatmaps(viewer)
    assert not heatmap.data.any() and heatmap.metadata[METADATA_KEY]["tiles"]["explained"] == 0
    assert widget.result.value.startswith("no tissue tiles") and errors == []
    assert len(viewer.layers["g tiles"].data) == 0


def test_tta_and_bfloat16_reach_every_tile(make_widget, qtbot, errors, monkeypatch):
    from napari_gradcam.core.tiling import loop

    settings_seen = []
    explain_tile_batch = loop.explain_tile_batch

    def recording(loaded, tiles, indices, settings, value_range):
        settings_seen.append(settings)
        return explain_tile_batch(loaded, tiles, indices, settings, value_range)

    monkeypatch.setattr(loop, "explain_tile_batch", recording)
    viewer, widget = make_widget(slide_like(), name="s")
    widget.method.value = "scorecam"
    widget.tta.value = widget.bfloat16.value = True
    start(widget, qtbot)
    finish(widget, qtbot)
    assert errors == []
    (heatmap,) = tiled_heatmaps(viewer)
    assert heatmap.name == "Score-CAM TTA bf16 · each tile's class · tiny"
    assert heatmap.metadata[METADATA_KEY]["tta"] and heatmap.metadata[METADATA_KEY]["bfloat16"]
    assert settings_seen and all(s.tta and s.bfloat16 for s in settings_seen)


def test_closing_the_dock_mid_run_stops_the_job_and_leaves_no_layer(
    make_widget, qtbot, errors, batches
):
    viewer, widget = make_widget(slide_like((256, 384), slice(None)), name="s")
    updates: list = []
    batches.hold()
    start(widget, qtbot, updates)
    qtbot.waitUntil(lambda: len(updates) >= 2, timeout=TIMEOUT_MS)
    worker = widget.runner.worker
    viewer.window.remove_dock_widget(widget.native)
    started = len(batches)
    batches.release()
    qtbot.waitUntil(lambda: worker.is_running is False, timeout=TIMEOUT_MS)
    qtbot.wait(100)
    assert len(batches) - started <= 1
    assert live_layers(viewer) == [] and errors == []


def test_a_tiled_heatmap_is_checked_on_the_tile_under_the_view_centre(make_widget, qtbot, errors):
    from napari_gradcam._napari.trust.layers import FEATURES_KEY
    from napari_gradcam._napari.trust.widget import TrustWidget

    viewer, widget = make_widget(slide_like(), scale=(0.5, 2.0), translate=(10, -25), name="s")
    start(widget, qtbot)
    finish(widget, qtbot)
    (heatmap,) = tiled_heatmaps(viewer)
    assert heatmap.metadata[METADATA_KEY]["tiles"]["size"] == (16.0, 16.0)
    trust = TrustWidget(viewer)
    viewer.window.add_dock_widget(trust, name="trust")
    trust.heatmap.value = heatmap
    qtbot.waitUntil(lambda: not trust.running, timeout=TIMEOUT_MS)
    image = viewer.layers["s"]
    viewer.scene.camera.center = tuple(image.data_to_world((100, 60)))
    trust.features_button.clicked.emit()
    qtbot.waitUntil(lambda: not trust.running, timeout=TIMEOUT_MS)
    (stack,) = [layer for layer in viewer.layers if FEATURES_KEY in layer.metadata]
    corners = [image.data_to_world((91.5, 51.5)), image.data_to_world((107.5, 67.5))]
    np.testing.assert_allclose(world_edges(stack), np.array(corners)[:, -2:], atol=1e-9)
    assert "checked the tile at (92, 52) of whole layer under the view centre" in trust.status.value
    np.testing.assert_allclose(  # the stack adds a dimension; the view stays on the tile
        viewer.scene.camera.center[-2:], image.data_to_world((100, 60)), atol=1e-9
    )


def test_tiled_runs_say_how_long_before_and_while_they_run(make_widget, qtbot, errors):
    _viewer, widget = make_widget(slide_like(), name="s")
    messages: list[str] = []
    start(widget, qtbot)
    widget.runner.worker.yielded.connect(
        lambda e: isinstance(e, Progress) and messages.append(e.message)
    )
    finish(widget, qtbot)
    assert any(message.endswith(" left") for message in messages), "an ETA during the run"
    pace = widget.tiles.options(widget.model_spec, "gradcam").pace
    assert pace > 0  # measured, for the estimate before the next run


@pytest.mark.parametrize(
    ("pace", "said"),
    [(None, "(timing the first batch)"), (0.25, "whole layer: about 6 min: ")],
    ids=["first-run", "known-pace"],
)
def test_the_estimate_comes_before_the_first_batch(tiny_spec, tiny_weights, pace, said):
    image = slide_like((256, 384), slice(None))
    job = ExplainJob(
        tiny_spec,
        tiny_weights,
        ExplainSettings("scorecam"),
        plane=Plane((image,), ((1.0, 1.0),)),
        boxes=(whole_layer_box(image.shape),),
        tiling=TilingOptions(pace=pace, tissue=False),
    )
    generator = run_job(job)
    steps = [next(generator) for _ in range(4)]  # loading, model ready, loaded, the estimate
    generator.close()
    n = steps[3].total
    assert n == 1457 and steps[3].step == 0  # 0.25 s x 1457 tiles: about 6 min
    assert f"{n} tiles x Score-CAM" in steps[3].message and said in steps[3].message


def test_durations_are_rounded_for_people():
    from napari_gradcam.core.tiling.loop import duration

    assert [duration(s) for s in (3, 42, 247, 7200)] == [
        "a few seconds",
        "under a minute",
        "about 4 min",
        "about 2.0 h",
    ]


def test_a_cancelled_run_shows_the_earlier_map_again(make_widget, qtbot, errors, batches):
    viewer, widget = make_widget(slide_like((256, 384), slice(None)), name="s")
    start(widget, qtbot)
    finish(widget, qtbot)
    (earlier,) = tiled_heatmaps(viewer)
    updates: list = []
    batches.clear()
    batches.hold()
    start(widget, qtbot, updates)
    qtbot.waitUntil(lambda: len(updates) >= 2, timeout=TIMEOUT_MS)
    assert not earlier.visible  # the map filling in is the one shown
    widget.cancel_button.clicked.emit()
    batches.release()
    finish(widget, qtbot)
    assert tiled_heatmaps(viewer) == [earlier] and earlier.visible
    assert widget.progress.value == 0 and widget.result.value == "cancelled"
