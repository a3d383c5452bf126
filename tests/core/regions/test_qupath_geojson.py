"""QuPath 0.5-style exports (tests/data/qupath_export.geojson) read and written losslessly."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_gradcam.core.regions.geojson import (
    Annotation,
    dumps,
    from_geojson,
    read_geojson,
    to_feature,
    write_geojson,
)
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.qupath_properties import DEFAULT_COLOUR, QuPathFacts
from tests.polygon_strategies import polygons

FIXTURE = Path(__file__).parents[2] / "data" / "qupath_export.geojson"
IMAGE = (1500, 2000)


def strict_loads(text: str):
    """Parse JSON, refusing the bare NaN / Infinity that strict JSON does not allow."""

    def refuse(token):
        raise ValueError(f"bare {token} in JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def exported():
    result = read_geojson(FIXTURE, IMAGE)
    return {a.id[:8]: a for a in result.annotations}, result


def test_every_object_of_a_qupath_export_is_read(exported):
    objects, result = exported
    assert result.skipped == [] and len(objects) == 9
    assert result.notes == [
        "feature 7: on plane {'c': -1, 'z': 1, 't': 0}: kept for export, shown on the current plane"
    ]
    core = objects["9d8a1b2c"]
    assert (core.label, core.colour, core.note) == ("Tumor", (200, 0, 0), "check the margin")
    assert core.qupath.name == "Tumour core" and core.qupath.colour == (255, 0, 0)
    assert core.qupath.locked and core.qupath.metadata == {"reviewer": "AB"}  # both metadata keys
    assert math.isnan(core.measurements["Mean DAB"]) and core.measurements["Num Detections"] == 3
    assert len(core.polygons[0].holes) == 1 and core.polygons[0].area == 500 * 400 - 100 * 100
    np.testing.assert_allclose(core.polygons[0].exterior[0], [99.5, 99.5])
    derived = objects["1c2d3e4f"]
    assert derived.label == "Tumor: Positive" and len(derived.polygons) == 2
    detection = objects["2a3b4c5d"]
    assert detection.label == "Stroma" and detection.qupath.object_type == "detection"
    assert detection.measurements["Nucleus: Area"] == math.inf
    assert detection.measurements["Min"] == -math.inf


def test_lines_points_cells_tiles_and_ellipses_are_kept(exported):
    objects, _ = exported
    line = objects["3b4c5d6e"]
    assert line.polygons == () and len(line.lines) == 1 and line.qupath.name == "invasive front"
    np.testing.assert_allclose(line.lines[0][0], [799.5, 149.5])
    points = objects["4c5d6e7f"]
    np.testing.assert_allclose(points.points, [[899.5, 1099.5], [949.5, 1149.5], [1009.5, 1189.5]])
    assert [len(line) for line in objects["8a9b0c1d"].lines] == [2, 3]
    cell = objects["5d6e7f8a"]
    assert cell.qupath.object_type == "cell" and cell.qupath.nucleus["type"] == "Polygon"
    tile = objects["6e7f8a9b"]
    assert tile.qupath.object_type == "tile" and tile.label == ""
    assert tile.measurements["Tissue fraction"] == 0.91 and math.isnan(tile.measurements["Entropy"])
    ellipse = objects["7f8a9b0c"]
    assert ellipse.qupath.ellipse and ellipse.qupath.plane == {"c": -1, "z": 1, "t": 0}
    assert ellipse.colour == (50, 50, 50, 128)


def test_a_bare_list_of_features_reads_the_same(exported):
    objects, _ = exported
    features = json.loads(FIXTURE.read_text(encoding="utf-8"))["features"]
    bare = from_geojson(features, IMAGE)
    assert [a.label for a in bare.annotations] == [a.label for a in objects.values()]


def comparable(annotation: Annotation) -> dict:
    """Everything of an object, geometry normalised (ring direction and start ignored)."""
    raw = json.dumps(to_feature(annotation)["geometry"])
    geometry = shapely.normalize(shapely.transform(shapely.from_geojson(raw), lambda c: c.round(6)))
    measurements = {k: "nan" if math.isnan(v) else v for k, v in annotation.measurements.items()}
    return {
        "geometry": geometry.wkt,
        **{k: getattr(annotation, k) for k in ("id", "label", "colour", "note")},
        "measurements": measurements,
        "qupath": annotation.qupath,
    }


def test_written_back_nothing_is_lost_and_the_file_is_strict_json(exported, tmp_path):
    objects, _ = exported
    path = write_geojson(tmp_path / "back.geojson", list(objects.values()))
    text = path.read_text(encoding="utf-8")
    strict_loads(text)
    again = read_geojson(path, IMAGE)
    assert again.skipped == []
    assert [comparable(a) for a in again.annotations] == [comparable(a) for a in objects.values()]
    written = {f["id"][:8]: f for f in strict_loads(text)["features"]}
    assert written["2a3b4c5d"]["properties"]["measurements"]["Nucleus: Area"] == "Infinity"
    assert written["9d8a1b2c"]["properties"]["measurements"]["Mean DAB"] == "NaN"
    assert written["1c2d3e4f"]["properties"]["classification"]["names"] == ["Tumor", "Positive"]
    assert written["5d6e7f8a"]["nucleusGeometry"]["type"] == "Polygon"
    assert written["7f8a9b0c"]["geometry"]["isEllipse"] is True
    assert written["4c5d6e7f"]["geometry"]["type"] == "MultiPoint"
    assert written["8a9b0c1d"]["geometry"]["type"] == "MultiLineString"
    assert "classification" not in written["6e7f8a9b"]["properties"]


def test_every_written_classification_has_a_colour_qupath_needs(exported):
    objects, _ = exported
    for feature in strict_loads(dumps(list(objects.values())))["features"]:
        classification = feature["properties"].get("classification")
        if classification is not None:
            assert len(classification["color"]) in (3, 4)
    assert objects["2a3b4c5d"].colour == (255, 255, 0)  # a class given as text gets one


def test_rings_are_closed_oriented_and_one_part_multipolygons_are_polygons():
    square = np.array([[0.0, 0.0], [0.0, 9.0], [9.0, 9.0], [9.0, 0.0]])
    hole = np.array([[3.0, 3.0], [6.0, 3.0], [6.0, 6.0], [3.0, 6.0]])
    for exterior in (square, square[::-1]):
        geometry = to_feature(Annotation((Polygon(exterior, (hole,)),)))["geometry"]
        assert geometry["type"] == "Polygon"
        outer, inner = (np.asarray(ring) for ring in geometry["coordinates"])
        assert (outer[0] == outer[-1]).all() and (inner[0] == inner[-1]).all()
        assert shapely.LinearRing(outer).is_ccw and not shapely.LinearRing(inner).is_ccw
    data = {"type": "MultiPolygon", "coordinates": [[[[0, 0], [5, 0], [5, 5], [0, 0]]]]}
    (read,) = from_geojson([{"type": "Feature", "geometry": data}]).annotations
    assert to_feature(read)["geometry"]["type"] == "Polygon"


def test_what_cannot_be_kept_is_said_per_feature():
    bow_tie = [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": bow_tie},
        "properties": {
            "measurements": {"ok": 1, "flag": True, "text": "high"},
            "metadata": {"list": [1, 2], "count": 2},
            "childObjects": [],
            "custom": {"ratio": math.nan, "deep": [math.inf]},
        },
    }
    result = from_geojson([feature])
    (annotation,) = result.annotations
    assert annotation.measurements == {"ok": 1.0}
    assert annotation.qupath.metadata == {"count": "2"}
    assert annotation.polygons and sum(p.area for p in annotation.polygons) == pytest.approx(50)
    said = " | ".join(result.notes)
    assert "Self-intersection" in said and "repaired" in said
    assert "'flag' = True is not a number" in said and "'text' = 'high'" in said
    assert "metadata 'list'" in said and "child objects kept" in said
    properties = strict_loads(dumps([annotation]))["features"][0]["properties"]
    assert properties["childObjects"] == []  # other properties are kept, as strict JSON
    assert properties["custom"] == {"ratio": "NaN", "deep": ["Infinity"]}


finite = st.floats(-1e6, 1e6, allow_nan=False)
measurement = st.one_of(finite, st.sampled_from([math.nan, math.inf, -math.inf]))
words = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=8)


@st.composite
def qupath_objects(draw: st.DrawFn) -> Annotation:
    """An object with polygons, lines or points, a (derived) class and odd measurements."""
    kind = draw(st.sampled_from(["polygons", "lines", "points"]))
    xy = st.tuples(st.floats(10, 490), st.floats(10, 490))
    lines = st.lists(st.lists(xy, min_size=2, max_size=5), min_size=1, max_size=2)
    shapes = {
        "polygons": {"polygons": tuple(draw(st.lists(polygons(), min_size=1, max_size=2)))},
        "lines": {"polygons": (), "lines": tuple(np.array(line) for line in draw(lines))},
        "points": {"polygons": (), "points": np.array(draw(st.lists(xy, min_size=1, max_size=4)))},
    }[kind]
    label = ": ".join(draw(st.lists(words, max_size=3)))
    facts = QuPathFacts(
        name=draw(st.text(max_size=10)),
        object_type=draw(st.sampled_from(["annotation", "detection", "cell", "tile"])),
        locked=draw(st.booleans()),
        metadata=draw(st.dictionaries(words.filter(lambda k: k != "note"), words, max_size=2)),
    )
    return Annotation(
        label=label,
        colour=(1, 2, 3) if label else DEFAULT_COLOUR,  # no class, no class colour
        note=draw(st.text(max_size=10)),
        measurements=draw(st.dictionaries(words, measurement, max_size=3)),
        qupath=facts,
        **shapes,
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(qupath_objects(), max_size=4))
def test_any_object_survives_the_round_trip(objects):
    result = from_geojson(strict_loads(dumps(objects)), image_shape=(500, 500))
    assert result.skipped == [] and result.notes == []
    assert [comparable(a) for a in result.annotations] == [comparable(a) for a in objects]
    for got, want in zip(result.annotations, objects, strict=True):
        for got_line, want_line in zip(got.lines, want.lines, strict=True):
            np.testing.assert_allclose(got_line, want_line, atol=1e-9)
        np.testing.assert_allclose(got.points, want.points.reshape(-1, 2), atol=1e-9)
