import json
import math

import numpy as np
import pytest
from napari.layers import Layer

from napari_gradcam._napari.annotations import file_actions
from napari_gradcam._napari.annotations import widget as annotation_widget
from napari_gradcam._napari.annotations.geojson_io import ANNOTATION_KEY
from napari_gradcam._napari.annotations.shape_coords import data_to_pixels, shape_polygons
from napari_gradcam._napari.annotations.style import outline_width
from napari_gradcam._napari.annotations.widget import AnnotationWidget
from napari_gradcam._napari.explain.job import ExplainJob
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.result_layers import METADATA_KEY, heatmap_layer
from napari_gradcam.core.regions.hot_regions import hot_region_polygons
from napari_gradcam.core.regions.region_stats import PlacedMap, region_statistics
from napari_gradcam.review.session import ImageRef, Session, save_session
from tests._napari.test_result_layers import make_result, world_edges

TIMEOUT_MS = 30_000
STRIDE = (8.0, 8.0)


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(annotation_widget, "show_warning", shown.append)
    return shown


def hot_cam() -> np.ndarray:
    cam = np.full((8, 12), 0.05, dtype=np.float32)
    cam[2:5, 3:7] = 1.0
    cam[5:7, 9:11] = 0.8
    return cam


def add_heatmap(viewer, image, cam, job, origin=(0.0, 0.0), box=None) -> Layer:
    result = make_result(cam, stride=STRIDE, origin=origin, box=box)
    return viewer.add_layer(Layer.create(*heatmap_layer(result, image, job)))


@pytest.fixture
def make_dock(make_napari_viewer, tile, tiny_spec, tiny_weights, warnings):
    def make(**image_kwargs):
        viewer = make_napari_viewer()
        kwargs = {"scale": (0.5, 0.5), "translate": (10, -20), "metadata": {"mpp": 0.5}}
        image = viewer.add_image(tile, name="tile", **{**kwargs, **image_kwargs})
        heatmap = add_heatmap(viewer, image, hot_cam(), ExplainJob(tiny_spec, tiny_weights))
        dock = AnnotationWidget(viewer)
        viewer.window.add_dock_widget(dock, name="Grad-CAM annotations")
        dock.hot.mode.value = "fraction"
        dock.hot.min_area.value = dock.hot.merge.value = 0
        return viewer, dock, image, heatmap

    return make


def settle(dock: AnnotationWidget, qtbot) -> None:
    """Wait for the debounced refresh, the statistics and the probabilities of every shape."""
    for _ in range(2):
        qtbot.waitUntil(lambda: not dock.computing, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: not dock.probabilities.running, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: not dock.computing, timeout=TIMEOUT_MS)


def test_hot_regions_become_aligned_polygons_with_statistics(make_dock, qtbot, warnings):
    _viewer, dock, _image, heatmap = make_dock()
    assert dock.heatmap.value is heatmap and dock.shapes is None
    dock.add_hot_regions()
    shapes = dock.shapes
    assert shapes.name == "annotations" and shapes.metadata[ANNOTATION_KEY]["image_layer"] == "tile"
    expected = hot_region_polygons(hot_cam(), STRIDE, mode="fraction", amount=0.5)
    assert len(shapes.data) == len(expected) == 2
    for index, polygon in enumerate(expected):
        # world position of the outline, once through the image and once through the heatmap
        world = shapes.data_to_world(shapes.data[index][0])
        cell = (polygon.exterior[0] + 0.5) / np.asarray(STRIDE) - 0.5
        np.testing.assert_allclose(world, heatmap.data_to_world(cell), atol=1e-9)
    settle(dock, qtbot)
    features = shapes.features
    assert list(features["note"]) == ["hot region (fraction 0.5)"] * 2
    assert features["mean"].tolist() == pytest.approx([1.0, 0.75 / 0.95])  # 0-1 of the range
    assert features["area_um2"].tolist() == pytest.approx((features["area_px"] * 0.25).tolist())
    assert features["heatmap"].tolist() == [heatmap.name] * 2
    assert dock.table.rowCount() == 2 and dock.table.item(0, 1).text() == "100"
    assert dock.table.item(1, 1).text() == f"{100 * (0.8 - 0.05) / 0.95:.0f}"
    assert dock.table.header_text("mean") == "mean %"
    assert dock.table.header_text("probability") == "p(tissue)"
    settle(dock, qtbot)
    probabilities = shapes.features["probability"]
    assert probabilities.between(0, 1).all()
    assert warnings == []


def test_statistics_follow_shapes_drawn_moved_and_removed(make_dock, qtbot):
    _viewer, dock, image, heatmap = make_dock()
    dock.add_hot_regions()
    shapes = dock.shapes
    square = np.array([[10.0, -20.0], [10.0, -10.0], [20.0, -10.0], [20.0, -20.0]])
    shapes.add_rectangles(np.array([square]) - np.asarray(shapes.translate))  # data coords
    settle(dock, qtbot)
    matrix = data_to_pixels(shapes, image)
    placed = PlacedMap(heatmap.data, STRIDE)

    def expected(index: int) -> dict:
        return region_statistics(shape_polygons(shapes, index, matrix), placed, mpp=0.5)

    new = len(shapes.data) - 1
    assert shapes.features.loc[new, "mean"] == pytest.approx(expected(new)["mean"])
    assert shapes.features.loc[new, "label"] == "unclear"
    moved = list(shapes.data)
    moved[new] = moved[new] + 12.0
    shapes.data = moved
    settle(dock, qtbot)
    assert shapes.features.loc[new, "max"] == pytest.approx(expected(new)["max"])
    assert shapes.features.loc[new, "area_px"] == pytest.approx(expected(new)["area_px"])
    shapes.selected_data = {0}
    shapes.remove_selected()
    settle(dock, qtbot)
    assert dock.table.rowCount() == len(shapes.data) == new


def test_selecting_a_row_selects_the_shape_and_centres_the_view(make_dock):
    viewer, dock, _image, _heatmap = make_dock()
    dock.add_hot_regions()
    shapes = dock.shapes
    dock.table.selectRow(1)
    assert shapes.selected_data == {1}
    assert viewer.layers.selection.active is shapes
    vertices = (
        shapes.data_to_world(shapes.data[1].min(axis=0)),
        shapes.data_to_world(shapes.data[1].max(axis=0)),
    )
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], np.mean(vertices, axis=0))


def test_the_table_follows_a_selection_made_on_the_canvas(make_dock):
    viewer, dock, _image, _heatmap = make_dock()
    dock.add_hot_regions()
    shapes = dock.shapes
    dock.select_annotation(0)
    dock.label.value = "suspicious"
    dock.set_note("check mitoses")
    centre = tuple(viewer.scene.camera.center)
    note = shapes.features.loc[1, "note"]
    shapes.selected_data = {1}  # as a click on the canvas does
    assert dock.table.selected_row() == 1
    assert dock.label.value == shapes.features.loc[1, "label"] != "suspicious"
    assert dock.note.value == note != "check mitoses"
    assert tuple(viewer.scene.camera.center) == centre, "a canvas click does not move the view"
    shapes.selected_data = {0}
    assert dock.table.selected_row() == 0 and dock.note.value == "check mitoses"
    shapes.selected_data = {0, 1}
    assert dock.table.selected_row() is None
    assert shapes.features.loc[1, "note"] == note, "showing a row edits nothing"


def test_labels_colour_shapes_and_notes_are_kept(make_dock):
    _viewer, dock, _image, _heatmap = make_dock()
    dock.add_hot_regions()
    shapes = dock.shapes
    dock.select_annotation(0)
    dock.label.value = "suspicious"
    dock.set_note("check mitoses")
    assert shapes.features.loc[0, "label"] == "suspicious"
    assert shapes.features.loc[0, "note"] == "check mitoses"
    np.testing.assert_allclose(shapes.edge_color[0], [1.0, 0.0, 1.0, 1.0])
    dock.add_label("necrosis")
    assert "necrosis" in dock.label.choices and dock.label.value == "necrosis"
    assert shapes.selected_data == {0} and shapes.features.loc[0, "label"] == "suspicious"
    assert "relabel" in dock.status.value
    shapes.add_rectangles(np.array([[[0.0, 0.0], [0.0, 9.0], [9.0, 9.0], [9.0, 0.0]]]))
    assert shapes.features["label"].iloc[-1] == "necrosis"
    dock.label.value = "artefact"
    dock.label.value = "necrosis"  # chosen again, with shape 0 selected: relabels it
    assert shapes.features.loc[0, "label"] == "necrosis"
    np.testing.assert_allclose(
        shapes.edge_color[0][:3], np.array(dock.labels.colour("necrosis")) / 255
    )
    assert shapes.metadata[ANNOTATION_KEY]["labels"]["necrosis"] == list(
        dock.labels.colour("necrosis")
    )
    dock.add_label("  ")
    assert dock.status.value == "a label needs a name"


def test_removing_the_heatmap_keeps_the_statistics_and_says_so(make_dock, qtbot, warnings):
    viewer, dock, _image, heatmap = make_dock()
    dock.add_hot_regions()
    settle(dock, qtbot)
    shapes = dock.shapes
    before = shapes.features.copy()
    viewer.layers.remove(heatmap)
    assert dock.heatmap.value is None
    assert "was removed" in warnings[-1] and "kept" in warnings[-1]
    moved = list(shapes.data)
    moved[0] = moved[0] + 3.0
    shapes.data = moved
    settle(dock, qtbot)
    assert shapes.features["mean"].tolist() == before["mean"].tolist()
    assert shapes.features["heatmap"].tolist() == before["heatmap"].tolist()
    assert dock.table.rowCount() == len(before)
    dock.add_hot_regions()
    assert "choose a heatmap" in warnings[-1]
    viewer.layers.remove(shapes)
    assert dock.shapes is None and "annotations layer" in warnings[-1]


def test_without_a_model_the_probability_stays_empty_with_a_message(make_dock, qtbot, warnings):
    viewer, dock, image, _heatmap = make_dock()
    broken = add_heatmap(viewer, image, hot_cam(), ExplainJob("no_such_module:factory"))
    dock.heatmap.value = broken
    dock.add_hot_regions()
    settle(dock, qtbot)
    assert math.isnan(dock.shapes.features.loc[0, "probability"])
    assert "cannot compute the class probability" in warnings[-1]


def test_csv_and_figure_exports_refuse_to_overwrite(make_dock, tmp_path, warnings):
    _viewer, dock, _image, _heatmap = make_dock()
    dock.add_hot_regions()
    dock.select_annotation(0)
    csv = dock.files.export_csv(tmp_path / "stats.csv")
    header = csv.read_text().splitlines()[0].split(",")
    assert header[:6] == ["id", "label", "note", "heatmap", "mean", "max"]
    assert len(csv.read_text().splitlines()) == 3
    assert dock.files.export_csv(csv) is None and "already exists" in warnings[-1]
    assert dock.files.figure_box() == (0, 0, 64, 96)
    png = dock.files.export_figure(tmp_path / "region.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert dock.files.export_figure(png) is None and "already exists" in warnings[-1]


def test_the_review_buttons_ask_before_replacing(make_dock, tmp_path, monkeypatch):
    _viewer, dock, _image, _heatmap = make_dock()
    dock.add_hot_regions()
    asked: list[str] = []
    monkeypatch.setattr(file_actions, "ask_folder", lambda caption: tmp_path)
    monkeypatch.setattr(file_actions, "confirm", lambda question: asked.append(question))
    dock.files._ask_save_review()
    assert (tmp_path / "session.json").exists() and asked == []
    dock.shapes.features.loc[0, "note"] = "changed"
    dock.files._ask_save_review()
    assert len(asked) == 1 and "Replace it?" in asked[0]
    assert "changed" not in (tmp_path / "annotations.geojson").read_text()


def test_a_crop_heatmap_on_a_moved_image_lines_up(make_dock, tiny_spec):
    viewer, dock, image, _heatmap = make_dock(scale=(0.7, 1.3), translate=(5, 40))
    crop = add_heatmap(
        viewer, image, hot_cam()[:4, :6], ExplainJob(tiny_spec), (16.0, 32.0), Box(16, 32, 48, 80)
    )
    dock.heatmap.value = crop
    dock.add_hot_regions()
    shapes = dock.shapes
    (polygon,) = shape_polygons(shapes, 0, data_to_pixels(shapes, image))
    # the 2 x 3 hot cells of the crop's map start at cell (2, 3): pixels (32, 56) on
    low, high = polygon.exterior.min(axis=0), polygon.exterior.max(axis=0)
    np.testing.assert_allclose(low, [16 + 2 * 8 - 0.5, 32 + 3 * 8 - 0.5])
    np.testing.assert_allclose(high, [16 + 4 * 8 - 0.5, 32 + 6 * 8 - 0.5])


def test_a_saved_review_reopens_in_a_new_viewer(make_dock, make_napari_viewer, tile, tmp_path):
    _viewer, dock, _image, heatmap = make_dock()
    dock.add_hot_regions()
    dock.select_annotation(1)
    dock.label.value = "suspicious"
    dock.set_note("look again")
    assert dock.files.save_review(tmp_path / "review") is not None
    other = make_napari_viewer()
    other.add_image(tile, name="tile", scale=(0.5, 0.5), translate=(10, -20))
    reopened = AnnotationWidget(other)
    shapes = reopened.files.open_review(tmp_path / "review")
    assert reopened.shapes is shapes and reopened.heatmap.value is not None
    heat = reopened.heatmap.value
    np.testing.assert_allclose(heat.data, heatmap.data)
    np.testing.assert_allclose(world_edges(heat), world_edges(heatmap))
    assert heat.colormap.name == heatmap.colormap.name and heat.opacity == heatmap.opacity
    assert shapes.features["label"].tolist() == dock.shapes.features["label"].tolist()
    assert shapes.features.loc[1, "note"] == "look again"
    assert shapes.features["id"].tolist() == dock.shapes.features["id"].tolist()
    for index in range(2):
        np.testing.assert_allclose(
            shapes.data_to_world(shapes.data[index][0]),
            dock.shapes.data_to_world(dock.shapes.data[index][0]),
            rtol=1e-5,
        )


def test_a_review_reopens_its_sample_or_says_the_image_is_missing(make_dock, tmp_path, warnings):
    viewer, dock, _image, _heatmap = make_dock()
    save_session(tmp_path / "ihc", Session(ImageRef("IHC", sample=("napari-gradcam", "ihc"))))
    dock.files.open_review(tmp_path / "ihc")
    assert viewer.layers[-2].source.sample == ("napari-gradcam", "ihc")
    save_session(tmp_path / "gone", Session(ImageRef("gone", path=str(tmp_path / "no.tif"))))
    assert dock.files.open_review(tmp_path / "gone") is None
    assert "is not open and its file is unknown or missing" in warnings[-1]
    assert dock.files.open_review(tmp_path / "nothing") is None
    assert "session.json is missing" in warnings[-1]


def test_a_tiled_heatmap_is_offered_once_finished(make_dock, qtbot):
    viewer, dock, _image, heatmap = make_dock()
    facts = dict(heatmap.metadata[METADATA_KEY])
    viewer.layers.remove(heatmap)
    running = viewer.add_image(
        np.zeros((8, 12), np.float32), metadata={METADATA_KEY: {"running": True}}
    )
    assert dock.heatmap.value is None and running not in dock.heatmap.choices
    facts.pop("target_index")
    running.data = hot_cam()  # finishing replaces the data, then the metadata
    running.metadata.update({METADATA_KEY: {**facts, "target_name": "tissue"}})
    qtbot.waitUntil(lambda: dock.heatmap.value is running, timeout=TIMEOUT_MS)
    dock.add_hot_regions()
    settle(dock, qtbot)
    assert dock.shapes.features["probability"].between(0, 1).all()


def test_qupath_objects_import_edit_and_export_with_their_points(make_dock, qtbot, tmp_path):
    import json

    from napari.layers import Points

    from napari_gradcam.core.regions.geojson import read_geojson

    viewer, dock, _image, _heatmap = make_dock()
    square = [[10, 10], [40, 10], [40, 30], [10, 30], [10, 10]]
    features = [
        {
            "type": "Feature",
            "id": "a",
            "geometry": {"type": "Polygon", "coordinates": [square]},
            "properties": {
                "classification": {"names": ["Tumor", "Positive"], "color": [200, 0, 0]},
                "measurements": {"QuPath area": "NaN"},
                "name": "core",
            },
        },
        {
            "type": "Feature",
            "id": "b",
            "properties": {"classification": "Stroma"},
            "geometry": {"type": "LineString", "coordinates": square[:3]},
        },
        {
            "type": "Feature",
            "id": "c",
            "properties": {"objectType": "detection"},
            "geometry": {"type": "MultiPoint", "coordinates": square[:2]},
        },
    ]
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(features))
    assert dock.files.import_geojson(path)
    qtbot.waitUntil(lambda: not dock.files.importing, timeout=TIMEOUT_MS)
    settle(dock, qtbot)
    shapes = dock.shapes
    assert dock.shapes is shapes and shapes.shape_type == ["polygon", "path"]
    (points,) = [layer for layer in viewer.layers if isinstance(layer, Points)]
    assert len(points.data) == 2 and "read 2 shapes, 2 points" in dock.status.value
    assert {"Tumor: Positive", "Stroma"} <= set(dock.labels.names)
    assert points.features["label"].tolist() == ["unclassified"] * 2
    dock.select_annotation(0)
    dock.set_note("re-check")
    written = dock.files.export_geojson(tmp_path / "back.geojson")
    back = {a.id: a for a in read_geojson(written).annotations}
    assert back.keys() == {"a", "b", "c"}
    assert back["a"].label == "Tumor: Positive" and back["a"].note == "re-check"
    assert back["a"].qupath.name == "core" and math.isnan(back["a"].measurements["QuPath area"])
    assert back["a"].measurements["mean"] >= 0  # the dock's statistics travel too
    assert len(back["b"].lines) == 1 and back["b"].label == "Stroma"
    assert back["c"].label == "" and back["c"].qupath.object_type == "detection"
    assert len(back["c"].points) == 2


def texts(shapes) -> list[str]:
    """The text napari draws next to each shape."""
    return np.ravel(shapes.text.view_text(np.arange(len(shapes.data)))).tolist()


def test_labels_are_written_on_the_canvas_and_outlines_are_wide(make_dock, make_napari_viewer):
    viewer, dock, image, _heatmap = make_dock()
    dock.add_hot_regions()
    shapes = dock.shapes
    assert shapes.text.visible and texts(shapes) == ["unclear"] * 2
    width = outline_width(image)
    assert width == max(3, round(max(image.level_shapes[0]) / 250))
    assert min(shapes.edge_width) >= width and shapes.current_edge_width >= width
    dock.select_annotation(0)
    dock.label.value = "suspicious"
    assert texts(shapes) == ["suspicious", "unclear"]
    own = viewer.add_shapes(
        [np.array([[0.0, 0.0], [0.0, 9.0], [9.0, 9.0]])],
        shape_type="polygon",
        text={"string": {"constant": "mine"}},
        edge_width=1,
    )
    dock.annotations.value = own
    assert texts(own) == ["mine"]  # the user's own text is kept


def test_undo_and_redo_cover_add_delete_move_and_relabel(make_dock, qtbot):
    _viewer, dock, _image, _heatmap = make_dock()
    dock.add_hot_regions()
    shapes = dock.shapes
    assert dock.undo_button.enabled and not dock.redo_button.enabled
    first = [np.array(d) for d in shapes.data]
    moved = list(shapes.data)
    moved[0] = moved[0] + 5.0
    shapes.data = moved  # a move
    settle(dock, qtbot)
    dock.select_annotation(1)
    dock.label.value = "suspicious"  # a relabel
    shapes.selected_data = {0}
    shapes.remove_selected()  # a delete
    settle(dock, qtbot)
    assert len(shapes.data) == 1 and shapes.features["label"].tolist() == ["suspicious"]
    dock.undo_button.clicked.emit()
    assert len(shapes.data) == 2 and shapes.features["label"].tolist() == ["unclear", "suspicious"]
    dock.undo()
    assert shapes.features["label"].tolist() == ["unclear", "unclear"]
    dock.undo()
    np.testing.assert_allclose(shapes.data[0], first[0])
    dock.undo()
    assert len(shapes.data) == 0 and not dock.undo_button.enabled  # before the hot regions
    settle(dock, qtbot)
    for _ in range(4):
        dock.redo()
    settle(dock, qtbot)
    assert len(shapes.data) == 1 and shapes.features["label"].tolist() == ["suspicious"]
    assert not dock.redo_button.enabled and dock.table.rowCount() == 1
    dock.undo()
    shapes.add_rectangles(np.array([[[0.0, 0.0], [0.0, 9.0], [9.0, 9.0], [9.0, 0.0]]]))
    settle(dock, qtbot)
    assert not dock.redo_button.enabled and len(shapes.data) == 3  # a new edit drops the redo
    dock.undo()
    assert len(shapes.data) == 2


def test_geojson_is_read_in_a_worker_and_a_bad_file_is_said(make_dock, qtbot, tmp_path):
    _viewer, dock, _image, _heatmap = make_dock()
    square = [[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]}}
    path = tmp_path / "many.geojson"
    path.write_text(json.dumps([feature] * 250))
    assert dock.files.import_geojson(path)
    assert dock.files.importing and dock.shapes is None  # returned before the file was read
    assert not dock.files.import_geojson(path)
    assert "another GeoJSON file is being read" in dock.status.value
    qtbot.waitUntil(lambda: not dock.files.importing, timeout=TIMEOUT_MS)
    settle(dock, qtbot)
    assert len(dock.shapes.data) == 250 and dock.table.rowCount() == 250
    assert dock.shapes.features["mean"].notna().all()
    (tmp_path / "deep.geojson").write_text("[" * 100 + "]" * 100)
    dock.files.import_geojson(tmp_path / "deep.geojson")
    qtbot.waitUntil(lambda: not dock.files.importing, timeout=TIMEOUT_MS)
    assert "nests arrays and objects 100 deep" in dock.status.value


def test_a_drawing_layer_in_other_units_gets_one_quiet_offer(make_dock):
    viewer, dock, _image, _heatmap = make_dock(units=("micrometer", "micrometer"))
    dock.add_hot_regions()
    assert not dock.units_offer.offering  # the plugin's own layer has the image's units
    assert tuple(map(str, dock.shapes.units)) == ("micrometer", "micrometer")
    mine = viewer.add_shapes(name="my drawing")
    assert dock.units_offer.offering and "'my drawing'" in dock.units_offer.text
    assert viewer.layers.extent.units is None  # what makes napari warn
    dock.units_offer.clicked.emit()
    assert tuple(map(str, mine.units)) == ("micrometer", "micrometer")
    assert not dock.units_offer.offering and viewer.layers.extent.units is not None
    viewer.add_shapes(name="same units", units=("micrometer", "micrometer"))
    assert not dock.units_offer.offering


def test_every_control_has_a_tooltip_and_the_dock_is_compact(make_dock):
    from qtpy.QtWidgets import (
        QAbstractButton,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
        QTableWidget,
    )

    _viewer, dock, _image, _heatmap = make_dock()
    kinds = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit)
    controls = [  # not the parts of a spin box, a combo box or the table's corner
        w
        for w in dock.native.findChildren(kinds)
        if not isinstance(w.parent(), (*kinds, QTableWidget))
    ]
    untipped = [
        f"{type(w).__name__} {w.text() if hasattr(w, 'text') else ''} in {type(w.parent())}"
        for w in controls
    ]
    untipped = [t for w, t in zip(controls, untipped, strict=True) if not w.toolTip()]
    assert controls and untipped == []
    assert dock.hot.advanced.native.isHidden()  # folded
    assert dock.native.sizeHint().height() < 800
    assert dock.table.maximumHeight() <= 260  # the table scrolls inside the dock
    dock.hot.more.value = True
    assert not dock.hot.advanced.native.isHidden()


def test_ctrl_z_undoes_in_the_dock_and_on_the_annotations_layer(make_dock, qtbot):
    from qtpy.QtGui import QShortcut

    _viewer, dock, _image, _heatmap = make_dock()
    dock.add_hot_regions()
    shapes = dock.shapes
    settle(dock, qtbot)
    shortcuts = {s.key().toString(): s for s in dock.native.findChildren(QShortcut)}
    assert set(shortcuts) >= {"Ctrl+Z", "Ctrl+Shift+Z"}
    shortcuts["Ctrl+Z"].activated.emit()
    assert len(shapes.data) == 0
    shortcuts["Ctrl+Shift+Z"].activated.emit()
    assert len(shapes.data) == 2
    bound = {str(key): action for key, action in shapes.keymap.items()}
    undo = next(action for key, action in bound.items() if "Z" in key and "Shift" not in key)
    undo(shapes)
    assert len(shapes.data) == 0
