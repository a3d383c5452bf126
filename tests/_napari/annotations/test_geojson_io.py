import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from napari.layers import Image, Layer, Shapes

from napari_gradcam._napari.annotations import geojson_io
from napari_gradcam._napari.annotations.geojson_io import (
    ANNOTATION_KEY,
    get_reader,
    read_annotations,
    write_annotations,
)
from napari_gradcam._napari.annotations.rings import decode_rings
from napari_gradcam._napari.annotations.shape_coords import apply, plane_matrix, polygons_to_data
from napari_gradcam.core.regions.geojson import GeoJSONError
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
            np.testing.assert_allclose(got, want, **TOLERANCE)


def test_shapes_on_a_pyramid_are_written_in_level0_pixels(tmp_path):
    pyramid = [np.zeros((512, 512), np.uint8), np.zeros((256, 256), np.uint8)]
    image = Image(pyramid, multiscale=True, scale=(0.5, 0.5), translate=(7, 3), name="slide")
    shapes = Shapes([SQUARE * 0.5 + [7, 3]], shape_type="polygon")  # world coordinates
    (path,) = write_annotations(tmp_path / "a.geojson", shapes, [image])
    ring = json.loads(Path(path).read_text())["features"][0]["geometry"]["coordinates"][0]
    np.testing.assert_allclose(np.asarray(ring)[:4, ::-1] - 0.5, SQUARE)


def test_rectangles_and_ellipses_are_polygons_and_lines_are_left_out(tmp_path, warnings):
    image = Image(IMAGE, name="slide")
    shapes = Shapes([SQUARE, SQUARE, SQUARE[:2]], shape_type=["rectangle", "ellipse", "line"])
    (path,) = write_annotations(tmp_path / "a.geojson", shapes, [image])
    features = json.loads(Path(path).read_text())["features"]
    assert [len(f["geometry"]["coordinates"][0]) for f in features] == [5, 65]
    assert "shape 2 (line) encloses no area" in warnings[0]


def test_the_npe2_reader_and_writer_work_from_the_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image = viewer.add_image(IMAGE, scale=(0.5, 2.0), translate=(10, -4), name="slide")
    hole = Polygon(SQUARE, (SQUARE[:3] * 0.1 + 108,))
    shapes = viewer.add_shapes(
        [polygons_to_data([hole], np.eye(3))], shape_type="polygon",
        scale=image.scale, translate=image.translate,
    )  # fmt: skip
    path = tmp_path / "out.geojson"
    viewer.layers.selection.active = shapes
    viewer.layers.save(str(path), selected=True, plugin="napari-gradcam")
    assert get_reader(str(path)) is not None and get_reader(str(tmp_path / "x.tif")) is None
    (layer,) = viewer.open(path, plugin="napari-gradcam")
    assert isinstance(layer, Shapes) and layer.name == "out"
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    for got, want in zip(world_rings(layer, 0), world_rings(shapes, 0), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)


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
    assert len(data) == 1
    assert "feature 1 skipped" in warnings[0] and "leave the 512 x 512 image" in warnings[0]
    assert "feature 2 skipped" in warnings[0] and "at least 3" in warnings[0]
    with pytest.raises(GeoJSONError, match="nothing to read"):
        read_annotations(write_features(tmp_path / "bad.geojson", outside), [image])
    (tmp_path / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(GeoJSONError, match="not valid JSON"):
        read_annotations(tmp_path / "broken.geojson", [image])
