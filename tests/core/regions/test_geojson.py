import json
import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_gradcam.core.regions import geojson
from napari_gradcam.core.regions.geojson import (
    Annotation,
    GeoJSONError,
    dumps,
    from_geojson,
    read_geojson,
    to_feature,
    write_geojson,
)
from napari_gradcam.core.regions.polygons import Polygon
from tests.polygon_strategies import label, note, polygons

SQUARE = np.array([[10.0, 20.0], [10.0, 30.0], [15.0, 30.0], [15.0, 20.0]])


def feature(geometry: dict, **properties) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def square_xy(x0: float = 0, y0: float = 0, size: float = 10) -> list[list[float]]:
    return [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]


def test_a_feature_is_what_qupath_reads():
    annotation = Annotation(
        (Polygon(SQUARE),), "suspicious", (230, 60, 60), "look again", {"mean": 0.5, "x": math.nan}
    )
    out = to_feature(annotation)
    assert out["id"] == annotation.id and len(out["id"]) == 36
    assert out["geometry"]["type"] == "Polygon"
    ring = out["geometry"]["coordinates"][0]
    assert ring[0] == [20.5, 10.5] and ring[-1] == ring[0] and len(ring) == 5
    properties = out["properties"]
    assert properties["objectType"] == "annotation"
    assert properties["classification"] == {"name": "suspicious", "color": [230, 60, 60]}
    assert properties["measurements"] == {"mean": 0.5, "x": "NaN"}
    assert properties["metadata"] == {"note": "look again"}
    assert "name" not in properties
    json.dumps(out, allow_nan=False)


def same_ring(got: np.ndarray, want: np.ndarray) -> bool:
    """Same closed ring, whatever its direction and first vertex."""
    got, want = (shapely.normalize(shapely.Polygon(ring)) for ring in (got, want))
    return bool(shapely.equals_exact(got, want, tolerance=1e-9))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(polygons(), min_size=1, max_size=3), label, note, st.floats(0, 1)),
        max_size=4,
    )
)
def test_round_trip_through_json_text_is_lossless(items):
    annotations = [
        Annotation(tuple(parts), name, (1, 2, 3), text, {"mean": value})
        for parts, name, text, value in items
    ]
    result = from_geojson(json.loads(dumps(annotations)), image_shape=(500, 500))
    assert result.skipped == []
    assert len(result.annotations) == len(annotations)
    for got, want in zip(result.annotations, annotations, strict=True):
        assert (got.id, got.label, got.note, got.colour) == (
            want.id,
            want.label,
            want.note,
            want.colour,
        )
        assert got.measurements == pytest.approx(want.measurements)
        assert len(got.polygons) == len(want.polygons)
        for got_polygon, want_polygon in zip(got.polygons, want.polygons, strict=True):
            assert len(got_polygon.holes) == len(want_polygon.holes)
            for got_ring, want_ring in zip(got_polygon.rings, want_polygon.rings, strict=True):
                assert same_ring(got_ring, want_ring)


def test_qupath_exports_read_back():
    with_hole = [square_xy(0, 0, 40), square_xy(10, 10, 5)[::-1]]
    data = [  # QuPath's default export: a bare list of features
        feature(
            {"type": "MultiPolygon", "coordinates": [with_hole, [square_xy(60, 0)]]},
            objectType="annotation",
            classification={"name": "Tumor", "color": [200, 0, 0]},
            measurements=[{"name": "Area µm^2", "value": 12.5}],
        ),
        feature({"type": "Polygon", "coordinates": [square_xy(5, 5)]}, name="region A"),
    ]
    result = from_geojson(data, image_shape=(100, 100))
    first, second = result.annotations
    assert [len(p.holes) for p in first.polygons] == [1, 0]
    assert first.label == "Tumor" and first.colour == (200, 0, 0)
    assert first.measurements == {"Area µm^2": 12.5}
    np.testing.assert_allclose(first.polygons[0].exterior[0], [-0.5, -0.5])
    assert second.label == "" and second.qupath.name == "region A"
    assert second.colour == geojson.DEFAULT_COLOUR


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (feature({"type": "Circle", "coordinates": [1, 2]}), "'Circle' is not GeoJSON"),
        (feature({"type": "LineString", "coordinates": [[1, 2]]}), "at least 2 points"),
        (feature({"type": "Point", "coordinates": [1, "a"]}), "finite [x, y]"),
        (feature({"type": "Polygon", "coordinates": [square_xy()]}, classification=3), "neither"),
        (feature({"type": "Polygon", "coordinates": [[[0, 0], [5, 5], [0, 0]]]}), "at least 3"),
        (feature({"type": "Polygon", "coordinates": []}), "no coordinates"),
        (feature({"type": "Polygon", "coordinates": [[["a", 1]]]}), "finite [x, y]"),
        ({"type": "Feature"}, "no geometry"),
        ("not a feature", "not a GeoJSON Feature"),
    ],
)
def test_bad_features_are_skipped_with_a_reason_and_the_rest_kept(bad, message):
    good = feature({"type": "Polygon", "coordinates": [square_xy()]})
    result = from_geojson({"type": "FeatureCollection", "features": [good, bad]}, (100, 100))
    assert len(result.annotations) == 1
    (skipped,) = result.skipped
    assert skipped.startswith("feature 1 skipped") and message in skipped


def test_malformed_and_huge_files_are_refused_clearly(tmp_path, monkeypatch):
    path = tmp_path / "a.geojson"
    path.write_text("{not json")
    with pytest.raises(GeoJSONError, match="not valid JSON"):
        read_geojson(path)
    path.write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(GeoJSONError, match="expected a FeatureCollection"):
        read_geojson(path)
    with pytest.raises(GeoJSONError, match="no GeoJSON file"):
        read_geojson(tmp_path / "missing.geojson")
    good = feature({"type": "Polygon", "coordinates": [square_xy()]})
    path.write_text(json.dumps([good] * 3))
    monkeypatch.setattr(geojson, "MAX_FEATURES", 2)
    with pytest.raises(GeoJSONError, match="3 features is more than the 2"):
        read_geojson(path)
    monkeypatch.setattr(geojson, "MAX_VERTICES", 8)
    monkeypatch.setattr(geojson, "MAX_FEATURES", 10)
    with pytest.raises(GeoJSONError, match="more than 8 vertices"):
        from_geojson([good] * 3)
    path.write_text(json.dumps([good] * 10))
    with pytest.raises(GeoJSONError, match="71 coordinate arrays"):
        read_geojson(path)
    monkeypatch.setattr(geojson, "MAX_BYTES", 10)
    with pytest.raises(GeoJSONError, match="MiB"):
        read_geojson(path)


def test_writing_is_atomic_and_never_silently_overwrites(tmp_path):
    path = tmp_path / "out.geojson"
    annotation = Annotation((Polygon(SQUARE),))
    write_geojson(path, [annotation])
    with pytest.raises(FileExistsError, match="already exists"):
        write_geojson(path, [])
    assert len(read_geojson(path).annotations) == 1
    write_geojson(path, [], overwrite=True)
    assert read_geojson(path).annotations == []
    assert [p.name for p in tmp_path.iterdir()] == ["out.geojson"]
