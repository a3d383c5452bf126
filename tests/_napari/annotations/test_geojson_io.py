import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from napari.layers import Image, Layer, Points, Shapes

from napari_gradcam._napari.annotations import geojson_io
from napari_gradcam._napari.annotations.geojson_io import (
    ANNOTATION_KEY,
    get_geojson_reader,
    read_annotations,
    write_annotations,
)
from napari_gradcam._napari.annotations.rings import decode_rings
from napari_gradcam._napari.annotations.shape_coords import apply, plane_matrix, polygons_to_data
from napari_gradcam.core.regions.geojson import GeoJSONError, read_geojson
from napari_gradcam.core.regions.placement import heatmap_transform
from napari_gradcam.core.regions.polygons import Polygon
from tests.polygon_strategies import label, note, polygons

IMAGE = np.zeros((512, 512), dtype=np.uint8)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-4}
"""napari keeps shape vertices in float32: lossless means to float32 precision."""
SQUARE = np.array([[100.0, 100.0], [100.0, 140.0], [140.0, 140.0], [140.0, 100.0]])


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    shown: list[str] = []
    monkeypatch.setattr(geojson_io, "show_warning", shown.append)
    return shown


def world_rings(layer: Shapes, index: int) -> list[np.ndarray]:
    return [apply(plane_matrix(layer), ring) for ring in decode_rings(layer.data[index])]


def assert_same_ring(got: np.ndarray, want: np.ndarray, tolerance: float = 1e-4) -> None:
    """Same closed ring to ``tolerance``, whatever its direction (GeoJSON orients rings)."""
    got, want = (shapely.normalize(shapely.Polygon(ring)) for ring in (got, want))
    assert shapely.equals_exact(got, want, tolerance=tolerance), (got.wkt, want.wkt)


def shapes_placement(kind: str, scale, translate, stride) -> dict:
    """Where the shapes layer lies: like the image, like a heatmap on it, or anywhere."""
    if kind == "image":
        return {"scale": scale, "translate": translate}
    if kind == "heatmap":
        heat_scale, heat_translate = heatmap_transform((stride, stride), (0, 0), scale, translate)
        return {"scale": heat_scale, "translate": heat_translate}
    return {"scale": (1.0, 1.0), "translate": (0.0, 0.0)}


positive = st.floats(0.25, 3.0)
offset = st.floats(-100.0, 100.0)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(polygons(), label, note), min_size=1, max_size=4),
    st.tuples(positive, positive),
    st.tuples(offset, offset),
    st.sampled_from(["image", "heatmap", "world"]),
    st.sampled_from([4.0, 16.0]),
)
def test_round_trip_keeps_world_positions_labels_and_notes(items, scale, translate, kind, stride):
    image = Image(IMAGE, scale=scale, translate=translate, name="slide")
    placement = shapes_placement(kind, scale, translate, stride)
    shapes = Shapes(ndim=2, **placement, metadata={ANNOTATION_KEY: {"image_layer": "slide"}})
    to_pixels = np.linalg.inv(plane_matrix(image)) @ plane_matrix(shapes)
    shapes.add([polygons_to_data([p], to_pixels) for p, _, _ in items], shape_type="polygon")
    shapes.features = {"label": [x[1] for x in items], "note": [x[2] for x in items]}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "annotations.geojson"
        write_annotations(path, shapes, [image])
        features = json.loads(path.read_text())["features"]
        (data, kwargs, kind_read) = read_annotations(path, [image])[0]
    ring = np.asarray(features[0]["geometry"]["coordinates"][0][0])
    np.testing.assert_allclose(ring[::-1] - 0.5, items[0][0].exterior[0], **TOLERANCE)
    back = Layer.create(data, kwargs, kind_read)
    assert back.features["label"].tolist() == [x[1] for x in items]
    assert back.features["note"].tolist() == [x[2] for x in items]
    assert back.features["id"].tolist() == shapes.features["id"].tolist()
    for index in range(len(items)):
        for got, want in zip(world_rings(back, index), world_rings(shapes, index), strict=True):
            assert_same_ring(got, want, TOLERANCE["atol"] * 10)


def test_shapes_on_a_pyramid_are_written_in_level0_pixels(tmp_path):
    pyramid = [np.zeros((512, 512), np.uint8), np.zeros((256, 256), np.uint8)]
    image = Image(pyramid, multiscale=True, scale=(0.5, 0.5), translate=(7, 3), name="slide")
    shapes = Shapes([SQUARE * 0.5 + [7, 3]], shape_type="polygon")  # world coordinates
    (path,) = write_annotations(tmp_path / "a.geojson", shapes, [image])
    ring = json.loads(Path(path).read_text())["features"][0]["geometry"]["coordinates"][0]
    np.testing.assert_allclose(np.asarray(ring)[:4, ::-1] - 0.5, SQUARE)


def test_rectangles_ellipses_and_lines_are_written_as_qupath_reads_them(tmp_path, warnings):
    image = Image(IMAGE, name="slide")
    flat = np.array([[10.0, 10.0], [10.0, 20.0], [10.0, 30.0]])
    click = np.array([[40.0, 40.0], [40.0, 40.0], [40.0, 40.0], [40.0, 40.0]])
    shapes = Shapes(
        [SQUARE, SQUARE, SQUARE[:2], SQUARE[:3] + 5, flat, click],
        shape_type=["rectangle", "ellipse", "line", "path", "polygon", "rectangle"],
    )
    (path,) = write_annotations(tmp_path / "a.geojson", shapes, [image])
    features = json.loads(Path(path).read_text())["features"]
    geometries = [f["geometry"] for f in features]
    assert [g["type"] for g in geometries] == ["Polygon"] * 2 + ["LineString"] * 4
    assert [len(g["coordinates"][0]) for g in geometries[:2]] == [5, 65]
    assert geometries[1]["isEllipse"] is True and "isEllipse" not in geometries[0]
    np.testing.assert_allclose(np.asarray(geometries[2]["coordinates"])[:, ::-1] - 0.5, SQUARE[:2])
    np.testing.assert_allclose(np.asarray(geometries[4]["coordinates"])[:, ::-1] - 0.5, flat)
    assert np.allclose(np.asarray(geometries[5]["coordinates"])[:, ::-1] - 0.5, [40, 40])
    assert "shape 4 (polygon) encloses no area: kept as a line" in warnings[0]
    assert "shape 5 (rectangle) encloses no area: kept as a line" in warnings[0]
    (data, kwargs, _kind) = read_annotations(path, [image])[0]
    assert kwargs["shape_type"] == ["polygon", "ellipse", "path", "path", "path", "path"]
    np.testing.assert_allclose(data[1], SQUARE, atol=1e-6)  # the ellipse's box again


def test_a_pasted_copy_is_a_new_object_and_lines_of_one_object_stay_together(tmp_path):
    shapes = Shapes(
        [SQUARE, SQUARE + 50, SQUARE[:2], SQUARE[2:]], shape_type=["polygon"] * 2 + ["path"] * 2
    )
    shapes.features = {"id": ["a", "a", "b", "b"], "label": ["unclear"] * 4, "note": [""] * 4}
    (path,) = write_annotations(tmp_path / "a.geojson", shapes)
    features = json.loads(Path(path).read_text())["features"]
    assert [f["geometry"]["type"] for f in features] == ["Polygon", "Polygon", "MultiLineString"]
    assert features[0]["id"] == "a" and features[1]["id"] not in ("a", "b")
    assert features[2]["id"] == "b"


def test_the_npe2_reader_and_writer_work_from_the_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image = viewer.add_image(IMAGE, scale=(0.5, 2.0), translate=(10, -4), name="slide")
    hole = Polygon(SQUARE, (SQUARE[:3] * 0.1 + 108,))
    shapes = viewer.add_shapes(
        [polygons_to_data([hole], np.eye(3))],
        shape_type="polygon",
        scale=image.scale,
        translate=image.translate,
    )
    path = tmp_path / "out.geojson"
    viewer.layers.selection.active = shapes
    viewer.layers.save(str(path), selected=True, plugin="napari-gradcam")
    assert (
        get_geojson_reader(str(path)) is not None
        and get_geojson_reader(str(tmp_path / "x.tif")) is None
    )
    (layer,) = viewer.open(path, plugin="napari-gradcam")
    assert isinstance(layer, Shapes) and layer.name == "out"
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    for got, want in zip(world_rings(layer, 0), world_rings(shapes, 0), strict=True):
        assert_same_ring(got, want, 1e-9)


def write_features(path: Path, *coordinates) -> Path:
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [c]}, "properties": {}}
        for c in coordinates
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_bad_files_say_what_is_wrong_and_keep_the_good_features(tmp_path, warnings):
    image = Image(IMAGE, name="slide")
    inside = [[10, 10], [50, 10], [50, 50], [10, 10]]
    outside = [[10, 10], [900, 10], [900, 50], [10, 10]]
    path = write_features(tmp_path / "mixed.geojson", inside, outside, inside[:2])
    (data, _kwargs, _kind) = read_annotations(path, [image])[0]
    assert len(data) == 2
    assert "feature 1: its coordinates" in warnings[0]
    assert "beyond the 512 x 512 image; kept whole" in warnings[0]
    assert "feature 2 skipped" in warnings[0] and "at least 3" in warnings[0]
    with pytest.raises(GeoJSONError, match="nothing to read"):
        read_annotations(write_features(tmp_path / "bad.geojson", inside[:2]), [image])
    (tmp_path / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(GeoJSONError, match="not valid JSON"):
        read_annotations(tmp_path / "broken.geojson", [image])


def test_an_object_over_the_image_edge_survives_saving_over_its_file(tmp_path, warnings):
    image = Image(IMAGE, name="slide")
    over = [[-40.0, 10.0], [600.0, 10.0], [600.0, 50.0], [-40.0, 10.0]]
    path = write_features(tmp_path / "qupath.geojson", over)
    shapes = Layer.create(*read_annotations(path, [image])[0])
    write_annotations(path, shapes, [image], overwrite=True)
    (annotation,) = read_geojson(path).annotations
    xy = annotation.polygons[0].exterior[:, ::-1] + 0.5
    assert sorted(map(tuple, np.round(xy, 3))) == sorted(map(tuple, over[:-1]))


FIXTURE = Path(__file__).parents[2] / "data" / "qupath_export.geojson"


def by_id(annotations) -> dict:
    return {a.id: a for a in annotations}


def test_a_qupath_export_opens_as_shapes_and_points_and_saves_back_whole(tmp_path, warnings):
    image = Image(np.zeros((1500, 2000), np.uint8), scale=(0.5, 0.5), name="slide")
    read = read_annotations(FIXTURE, [image])
    assert [kind for _, _, kind in read] == ["shapes", "points"]
    shapes, points = (Layer.create(*item) for item in read)
    assert points.name == "qupath_export points" and len(points.data) == 3
    assert shapes.shape_type.count("path") == 3 and shapes.shape_type.count("ellipse") == 1
    labels = shapes.features["label"].tolist()
    assert "Tumor: Positive" in labels and labels.count("unclassified") == 1
    assert "plane" in warnings[0]
    (path,) = write_annotations(tmp_path / "back.geojson", shapes, [image], points=[points])
    before, after = (by_id(read_geojson(p).annotations) for p in (FIXTURE, path))
    assert after.keys() == before.keys()
    for key, want in before.items():
        got = after[key]
        assert (got.label, got.colour, got.note, got.qupath) == (
            want.label,
            want.colour,
            want.note,
            want.qupath,
        )
        assert got.measurements.keys() == want.measurements.keys()
        np.testing.assert_allclose(
            list(got.measurements.values()), list(want.measurements.values())
        )
        np.testing.assert_allclose(got.points, want.points, atol=1e-3)
        for got_line, want_line in zip(got.lines, want.lines, strict=True):
            np.testing.assert_allclose(got_line, want_line, atol=1e-3)
        if not want.qupath.ellipse:
            for got_p, want_p in zip(got.polygons, want.polygons, strict=True):
                for got_ring, want_ring in zip(got_p.rings, want_p.rings, strict=True):
                    assert_same_ring(got_ring, want_ring, 1e-3)


def test_shapes_and_points_save_into_one_file_from_the_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((1500, 2000), np.uint8), name="slide")
    layers = viewer.open(FIXTURE, plugin="napari-gradcam")
    assert [type(layer) for layer in layers] == [Shapes, Points]
    path = tmp_path / "both.geojson"
    viewer.layers.selection.update(layers)
    viewer.layers.save(str(path), selected=True, plugin="napari-gradcam")
    assert len(read_geojson(path).annotations) == 9
    viewer.layers.selection = {layers[1]}
    points_only = tmp_path / "points.geojson"
    viewer.layers.save(str(points_only), selected=True, plugin="napari-gradcam")
    (mitoses,) = read_geojson(points_only).annotations
    assert mitoses.label == "Mitosis" and len(mitoses.points) == 3
