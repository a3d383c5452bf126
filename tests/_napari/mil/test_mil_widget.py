"""The slide-level model dock: maps placed on the slide, the top-tile table, drill-downs."""

import json
import threading

import numpy as np
import pytest

from napari_gradcam._napari.mil import widget as widget_module
from napari_gradcam._napari.records import METADATA_KEY
from napari_gradcam.data import HE_MPP
from tests._napari.mil.conftest import SIDE, TIMEOUT_MS, he_square
from tests._napari.test_result_layers import world_edges

SCORES = ("attention", "grad x embedding", "integrated gradients")


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    return shown


def run(dock, qtbot) -> None:
    dock.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)


def mil_layers(viewer) -> dict:
    return {
        layer.name: layer
        for layer in viewer.layers
        if "mil" in layer.metadata.get(METADATA_KEY, {})
    }


def tile_edges(layer, boxes: np.ndarray) -> np.ndarray:
    """World (low, high) edges of the union of level-0 boxes on ``layer``."""
    low = boxes[:, :2].min(axis=0) - 0.5
    high = boxes[:, 2:].max(axis=0) - 0.5
    scale, translate = np.asarray(layer.scale[-2:]), np.asarray(layer.translate[-2:])
    return np.stack([translate + scale * low, translate + scale * high])


def test_run_adds_score_maps_aligned_with_the_reader_slide(
    make_mil_dock, reader_layer, qtbot, errors
):
    data, kwargs = reader_layer
    viewer, dock, slide = make_mil_dock(data, **{**kwargs, "translate": (30.0, -12.0)})
    assert slide.multiscale and slide.scale[-1] == pytest.approx(HE_MPP)
    run(dock, qtbot)
    assert errors == []
    result = dock.result
    assert len(result.tiles.embeddings) == (SIDE // 96) ** 2  # every tile of the square
    maps = mil_layers(viewer)
    target = result.target_name
    assert set(maps) == {f"{slide.name} MIL {score} {target}" for score in SCORES}
    for layer in maps.values():
        np.testing.assert_allclose(world_edges(layer), world_edges(slide), atol=1e-6)
        np.testing.assert_allclose(world_edges(layer), tile_edges(slide, result.tiles.boxes))
    for score in SCORES[1:]:
        layer = maps[f"{slide.name} MIL {score} {target}"]
        low, high = layer.contrast_limits
        assert low == -high and high == pytest.approx(np.abs(layer.data).max())
        assert layer.colormap.name.startswith("BrBG")
        colours = layer.colormap.map(np.array([0.0, 0.5, 1.0]))
        assert colours[1, 3] == 0 and colours[0, 3] == colours[2, 3] == 1  # clear at zero
        assert layer.data.min() < 0 < layer.data.max()
    attention = maps[f"{slide.name} MIL attention {target}"]
    assert attention.contrast_limits[0] == 0 and attention.colormap.name.startswith("magma")
    probabilities, classes = result.probabilities, ("negative", "positive")
    assert probabilities.sum() == pytest.approx(1.0)
    assert target == classes[int(np.argmax(probabilities))]  # "predicted"
    first, second = np.argsort(-probabilities)
    assert dock.prediction.value == (
        f"{result.model.name} calls this slide {classes[first]}: {probabilities[first]:.2f} "
        f"({classes[second]} {probabilities[second]:.2f}); the maps explain {target}"
    )
    assert dock.progress.value == dock.progress.max, "the run ends at 100 %"
    assert dock.status.value == f"25 tiles scored in {result.seconds:.1f} s"


def test_the_table_lists_the_top_tiles_for_and_against_sorted(
    make_mil_dock, reader_layer, qtbot, errors
):
    data, kwargs = reader_layer
    _viewer, dock, slide = make_mil_dock(data, **kwargs)
    dock.controls.top_k.value = 3
    run(dock, qtbot)
    table, scores = dock.table, dock.result.scores.scores["grad_x_embedding"]
    rows = table.rows
    sides = [row.side for row in rows]
    assert sides == sorted(sides, key=["for", "against"].index) and len(rows) <= 6
    for_rows = [row.score for row in rows if row.side == "for"]
    against = [row.score for row in rows if row.side == "against"]
    assert for_rows == sorted(for_rows, reverse=True) and all(s > 0 for s in for_rows)
    assert against == sorted(against) and all(s < 0 for s in against)
    assert for_rows[0] == pytest.approx(scores.max())
    if against:
        assert against[0] == pytest.approx(scores.min())
    first = rows[0]
    box = dock.result.tiles.boxes[first.tile]
    centre = np.asarray(slide.scale[-2:]) * (box[:2] + box[2:] - 1) / 2
    np.testing.assert_allclose(first.centre, centre)
    assert table.text(0, 1) == str(first.tile) and table.text(0, 0) == "for"
    assert float(table.text(0, 2)) == pytest.approx(first.score, rel=1e-3)
    header = table.horizontalHeaderItem(3)
    assert header.text() == "y (µm)" and "micrometer" in header.toolTip()
    table.resize(420, 300)
    for column in range(table.columnCount()):
        text = table.horizontalHeaderItem(column).text()
        needed = table.horizontalHeader().fontMetrics().horizontalAdvance(text)
        assert table.columnWidth(column) >= needed, f"the header {text!r} is cut"


def test_a_row_click_jumps_to_the_tile_and_draws_its_drill_down(
    make_mil_dock, reader_layer, qtbot, errors
):
    data, kwargs = reader_layer
    viewer, dock, slide = make_mil_dock(data, **{**kwargs, "translate": (5.0, 7.0)})
    run(dock, qtbot)
    row = dock.table.rows[1]
    dock.table.selectRow(1)
    box = dock.result.tiles.boxes[row.tile]
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], row.centre)
    name = f"{slide.name} MIL drill-down tile {row.tile} ({row.side})"
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=TIMEOUT_MS)
    assert errors == []
    drill = viewer.layers[name]
    np.testing.assert_allclose(world_edges(drill), tile_edges(slide, box[None]), atol=1e-6)
    assert drill.data.max() > 0 and drill.metadata[METADATA_KEY]["mil_drill_down"]["tile"] == (
        row.tile
    )
    dock.table.selectRow(0)
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)
    dock.table.selectRow(1)  # again: the layer is selected, not drawn twice
    assert not dock.running and [layer.name for layer in viewer.layers].count(name) == 1
    assert viewer.layers.selection.active is drill


def test_a_plain_image_layer_with_its_mpp_is_a_slide_too(make_mil_dock, qtbot, errors):
    viewer, dock, slide = make_mil_dock(
        he_square(), scale=(2.0, 3.0), translate=(-4.0, 9.0), metadata={"mpp": HE_MPP}
    )
    dock.controls.attention.value = dock.controls.ig.value = False
    run(dock, qtbot)
    assert errors == []
    (layer,) = mil_layers(viewer).values()
    assert layer.name == f"{slide.name} MIL grad x embedding {dock.result.target_name}"
    np.testing.assert_allclose(world_edges(layer), world_edges(slide), atol=1e-6)


class Held:
    """Holds the worker in the encoder until released (so a test can act mid-run)."""

    def __init__(self) -> None:
        self.entered, self.gate = threading.Event(), threading.Event()

    def wait_inside(self) -> None:
        assert self.entered.wait(timeout=TIMEOUT_MS / 1000)


@pytest.fixture
def held(monkeypatch):
    from napari_gradcam.slides import embeddings

    hold, embed_tiles = Held(), embeddings.embed_tiles

    def embed(*args):
        hold.entered.set()
        hold.gate.wait(timeout=TIMEOUT_MS / 1000)
        return embed_tiles(*args)

    monkeypatch.setattr(embeddings, "embed_tiles", embed)
    yield hold
    hold.gate.set()


def test_cancel_leaves_no_layers(make_mil_dock, reader_layer, qtbot, errors, held):
    data, kwargs = reader_layer
    viewer, dock, _slide = make_mil_dock(data, **kwargs)
    dock.run_button.clicked.emit()
    held.wait_inside()
    assert not dock.run_button.enabled and dock.cancel_button.enabled
    dock.cancel_button.clicked.emit()
    held.gate.set()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)
    assert mil_layers(viewer) == {} and len(viewer.layers) == 1
    assert dock.status.value == "cancelled" and dock.result is None and errors == []
    assert dock.run_button.enabled and dock.table.rowCount() == 0


def test_removing_the_slide_mid_run_stops_and_adds_nothing(
    make_mil_dock, reader_layer, qtbot, errors, held
):
    data, kwargs = reader_layer
    viewer, dock, slide = make_mil_dock(data, **kwargs)
    dock.run_button.clicked.emit()
    held.wait_inside()
    viewer.layers.remove(slide)
    held.gate.set()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)
    assert len(viewer.layers) == 0 and dock.result is None and errors == []
    assert dock.status.value == f"stopped: the layer {slide.name!r} was removed"


def test_a_bad_card_gives_a_message_and_no_layers(
    make_mil_dock, reader_layer, qtbot, errors, tmp_path
):
    from napari_gradcam._napari.mil.controls import DEMO_CARD

    card = json.loads(DEMO_CARD.read_text())
    card["aggregator"]["kwargs"]["in_dim"] = 32  # the encoder gives 64-wide embeddings
    for section, key in (("encoder", "weights"), ("encoder", "card"), ("aggregator", "weights")):
        card[section][key] = str(DEMO_CARD.parent / card[section][key])
    del card["aggregator"]["weights"]
    path = tmp_path / "wrong_width.json"
    path.write_text(json.dumps(card))
    data, kwargs = reader_layer
    viewer, dock, _slide = make_mil_dock(data, **kwargs)
    dock.controls.card.value = str(path)
    assert dock.controls.bundled.value == "your own card (below)"
    run(dock, qtbot)
    assert len(errors) == 1 and "64-wide embeddings" in errors[0]
    assert dock.status.value.startswith("failed: ") and len(viewer.layers) == 1
    dock.controls.card.value = str(tmp_path / "missing.json")
    run(dock, qtbot)
    assert "no slide-model card" in errors[-1] and len(viewer.layers) == 1


def test_the_class_choices_come_from_the_card_and_removals_are_guarded(make_mil_dock, reader_layer):
    from napari_gradcam._napari.gl_guard import GUARD_PROPERTY, canvas_widget

    data, kwargs = reader_layer
    viewer, dock, _slide = make_mil_dock(data, **kwargs)
    assert canvas_widget(viewer).property(GUARD_PROPERTY)
    assert dock.controls.target.choices == ("predicted", "negative", "positive")
    assert dock.controls.bundled.value == "demo (bundled)"


def test_a_chosen_class_with_percentile_scores(make_mil_dock, reader_layer, qtbot, errors):
    data, kwargs = reader_layer
    viewer, dock, slide = make_mil_dock(data, **kwargs)
    dock.controls.target.value = "negative"
    dock.controls.percentile.value = True
    dock.controls.attention.value = False
    run(dock, qtbot)
    assert errors == [] and dock.result.target_name == "negative"
    maps = mil_layers(viewer)
    assert set(maps) == {
        f"{slide.name} MIL grad x embedding negative",
        f"{slide.name} MIL integrated gradients negative",
    }
    for layer in maps.values():  # sign(score) * rank percentile of |score|
        assert np.abs(layer.data).max() == pytest.approx(1.0)
        assert layer.metadata[METADATA_KEY]["mil"]["target_name"] == "negative"


def test_a_grayscale_layer_is_refused_with_a_message() -> None:
    from napari.layers import Image

    from napari_gradcam._napari.mil.source import slide_source

    with pytest.raises(ValueError, match="not a 2-D RGB slide"):
        slide_source(Image(np.zeros((64, 64), np.uint8), name="gray"))


def test_tiles_read_from_a_coarser_level_are_placed_on_level_0(
    make_mil_dock, qtbot, errors, tmp_path
):
    from napari_gradcam._napari.reader import read_slide
    from tests._napari.mil.conftest import write_he_slide

    # level 0 claims half the card's mpp: the tiles are read from level 1 (2x downsampled)
    path = write_he_slide(tmp_path / "fine.tif", mpp=HE_MPP / 2)
    data, kwargs, _kind = read_slide(str(path))[0]
    viewer, dock, slide = make_mil_dock(data, **{**kwargs, "translate": (3.0, 8.0)})
    dock.controls.attention.value = dock.controls.ig.value = False
    run(dock, qtbot)
    assert errors == []
    tiles = dock.result.tiles
    assert tiles.level == 1 and tiles.pixel_size == (2.0, 2.0)
    (layer,) = mil_layers(viewer).values()
    np.testing.assert_allclose(world_edges(layer), tile_edges(slide, tiles.boxes), atol=1e-6)
    np.testing.assert_allclose(world_edges(layer), world_edges(slide), atol=1e-6)
    row = dock.table.rows[0]
    box = tiles.boxes[row.tile]
    np.testing.assert_allclose(
        row.centre, np.asarray(slide.translate) + slide.scale * (box[:2] + box[2:] - 1) / 2
    )


def test_a_layer_without_microns_per_pixel_is_refused(make_mil_dock, qtbot, errors):
    viewer, dock, _slide = make_mil_dock(he_square(), name="no mpp")
    run(dock, qtbot)
    assert len(errors) == 1 and "does not say its microns per pixel" in errors[0]
    assert len(viewer.layers) == 1


def test_one_map_is_shown_at_a_time_with_a_legend(make_mil_dock, reader_layer, qtbot, errors):
    data, kwargs = reader_layer
    viewer, dock, slide = make_mil_dock(data, **kwargs)
    assert dock.native.minimumSizeHint().height() < 540 and not dock.legend.visible
    run(dock, qtbot)
    target = dock.result.target_name
    maps = mil_layers(viewer)
    assert len(maps) == 3 and [layer.visible for layer in maps.values()].count(True) == 1
    gradient = maps[f"{slide.name} MIL grad x embedding {target}"]
    assert gradient.visible, "the table's ranking score is shown first"
    assert f"for {target}" in dock.legend.value and f"against {target}" in dock.legend.value
    assert set(dock.shown.choices) == {
        f"tile score, grad x embedding: for / against {target}",
        f"tile score, integrated gradients: for / against {target}",
        "attention (where the model looked)",
    }
    dock.shown.value = "attention (where the model looked)"
    attention = maps[f"{slide.name} MIL attention {target}"]
    assert attention.visible and not gradient.visible and len(mil_layers(viewer)) == 3
    assert "attention" in dock.legend.value and f"for {target}" not in dock.legend.value
    assert dock.shown.tooltip and dock.advanced.expanded is False
    assert dock.native.minimumSizeHint().height() < 640, "fits beside the other docks"


def test_drill_downs_for_and_against_have_their_own_colours(
    make_mil_dock, reader_layer, qtbot, errors
):
    data, kwargs = reader_layer
    viewer, dock, slide = make_mil_dock(data, **kwargs)
    dock.controls.top_k.value = 1
    run(dock, qtbot)
    sides = {row.side: index for index, row in enumerate(dock.table.rows)}
    assert set(sides) == {"for", "against"}
    drills = {}
    for side, index in sides.items():
        dock.table.selectRow(index)
        qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)
        row = dock.table.rows[index]
        drills[side] = viewer.layers[f"{slide.name} MIL drill-down tile {row.tile} ({side})"]
        assert dock.progress.value == dock.progress.max
    top = {side: layer.colormap.map(np.array([1.0]))[0] for side, layer in drills.items()}
    assert top["for"][1] > top["for"][0] and top["against"][0] > top["against"][2]  # teal, orange
    assert errors == []


def test_an_unexpected_error_is_shown_in_full(
    make_mil_dock, reader_layer, qtbot, errors, monkeypatch
):
    data, kwargs = reader_layer
    viewer, dock, _slide = make_mil_dock(data, **kwargs)

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug in scoring " + "with a long explanation " * 8)

    monkeypatch.setattr("napari_gradcam.slides.mil_runner.score_tiles", broken)
    run(dock, qtbot)
    status = dock.status.value
    assert status.startswith("failed: unexpected error while running the slide-level model")
    assert status.count("with a long explanation") == 8 and dock.status.native.wordWrap()
    assert errors == [f"{widget_module.NAME}: {status.removeprefix('failed: ')}"]
    assert len(viewer.layers) == 1
