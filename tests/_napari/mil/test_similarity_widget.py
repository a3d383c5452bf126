"""The slide similarity dock: the tile map placed on the slide, the table, drill-downs, shapes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gradcam._napari.reader import read_slide
from napari_gradcam._napari.records import METADATA_KEY
from napari_gradcam._napari.similarity import widget as widget_module
from napari_gradcam.data import HE_MPP
from napari_gradcam.models import cache
from tests._napari.mil.conftest import TIMEOUT_MS, write_he_slide
from tests._napari.test_result_layers import world_edges
from tests.slides.tiny_vlm import tiny_vlm


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    return shown


@pytest.fixture
def make_dock(make_napari_viewer, tmp_path, monkeypatch, reader_layer):
    """A viewer with the test slide (as the reader opens it) and the docked dock.

    ``slide_mpp`` writes the slide anew with that level-0 mpp (the tiny model reads 0.5).
    """
    loaded, _ = tiny_vlm()
    monkeypatch.setattr(cache, "cached_model", lambda spec, weights=None, **_: loaded)

    def make(slide_mpp: float | None = None, **changes):
        data, kwargs = reader_layer
        if slide_mpp is not None:
            path = write_he_slide(tmp_path / f"he_{slide_mpp}.tif", slide_mpp)
            data, kwargs, _kind = read_slide(str(path))[0]
        viewer = make_napari_viewer()
        layer = viewer.add_image(data, **{**kwargs, **changes})
        dock = widget_module.SlideSimilarityWidget(viewer, cache_dir=str(tmp_path / "cache"))
        viewer.window.add_dock_widget(dock, name=widget_module.NAME)
        dock.image.value = layer
        dock.model.value = "tiny"
        return viewer, dock, layer

    return make


def run(dock, qtbot) -> None:
    dock.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)


def test_a_prompt_map_lies_on_its_tiles_and_is_named_after_the_prompt(
    make_dock, qtbot, errors
) -> None:
    viewer, dock, slide = make_dock(translate=(30.0, -12.0))
    assert slide.multiscale and slide.scale[-1] == pytest.approx(HE_MPP)
    dock.prompt.value = "nuclei dense; many nuclei"
    run(dock, qtbot)
    assert errors == []
    result = dock.result
    name = f"{slide.name} similarity to prompt 'nuclei dense; many nuclei'"
    layer = viewer.layers[name]
    facts = layer.metadata[METADATA_KEY]["similarity"]
    assert facts["target"] == "prompt 'nuclei dense; many nuclei'"
    assert facts["tiles"] == len(result.scores)
    boxes = result.tiles.boxes
    low = boxes[:, :2].min(axis=0) - 0.5
    high = boxes[:, 2:].max(axis=0) - 0.5
    scale, translate = np.asarray(slide.scale), np.asarray(slide.translate)
    expected = np.stack([translate + scale * low, translate + scale * high])
    np.testing.assert_allclose(world_edges(layer), expected, atol=1e-6)
    assert layer.colormap.name.startswith("magma") and layer.contrast_limits == pytest.approx(
        result.limits()
    )
    qtbot.waitUntil(lambda: layer.colorbar.visible, timeout=TIMEOUT_MS)
    assert dock.table.rowCount() == min(8, len(result.scores))
    assert [row.tile for row in dock.table.rows] == result.top(8)
    dock.table.selectRow(0)
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)
    tile = result.top(1)[0]
    drill = viewer.layers[f"{name} drill-down tile {tile}"]
    assert drill.metadata[METADATA_KEY]["similarity_drill_down"]["tile"] == tile
    y0, x0, y1, x1 = boxes[tile]
    edges = [translate + scale * (np.array(corner) - 0.5) for corner in ((y0, x0), (y1, x1))]
    np.testing.assert_allclose(world_edges(drill), np.stack(edges), atol=1e-6)


@pytest.mark.parametrize("level", [0, 1])
def test_the_map_lies_on_its_tiles_at_any_pyramid_level(make_dock, qtbot, errors, level) -> None:
    viewer, dock, slide = make_dock(slide_mpp=0.5 / 2**level, translate=(7.0, 3.0))
    dock.prompt.value = "nuclei dense"
    run(dock, qtbot)
    assert errors == [] and dock.result.tiles.level == level
    boxes = dock.result.tiles.boxes
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], 64 * 2**level)
    layer = viewer.layers[f"{slide.name} similarity to prompt 'nuclei dense'"]
    scale, translate = np.asarray(slide.scale), np.asarray(slide.translate)
    edges = [
        translate + scale * (corner - 0.5) for corner in (boxes[:, :2].min(0), boxes[:, 2:].max(0))
    ]
    np.testing.assert_allclose(world_edges(layer), np.stack(edges), atol=1e-6)


def test_like_a_shape_finds_the_tile_under_it(make_dock, qtbot, errors) -> None:
    viewer, dock, slide = make_dock()
    dock.prompt.value = "nuclei dense"
    run(dock, qtbot)
    boxes = dock.result.tiles.boxes
    y0, x0, y1, x1 = boxes[len(boxes) // 2]
    scale = np.asarray(slide.scale)
    corners = np.array([[y0, x0], [y1 - 1, x1 - 1]]) * scale  # pixel centres, world
    shapes = viewer.add_shapes([corners], shape_type="rectangle", name="reference")
    dock.target.value = "like a shape"
    dock.shapes.value = shapes
    run(dock, qtbot)
    assert errors == []
    assert dock.result.label == "like 'reference shape 0'"
    assert dock.result.top(1) == [len(boxes) // 2]
    assert f"{slide.name} similarity to like 'reference shape 0'" in viewer.layers


def test_says_what_is_missing(make_dock, errors) -> None:
    _viewer, dock, _slide = make_dock()
    dock.run()
    assert errors and "prompt" in errors[-1]
    dock.target.value = "like a shape"
    dock.run()
    assert "shape" in errors[-1]
