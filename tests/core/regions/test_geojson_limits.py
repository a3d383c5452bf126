"""GeoJSON read within limits (checked before parsing), legacy QuPath classes, objects over the
edge, and any JSON at all: annotations or a ValueError that says what is wrong."""

import json
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_gradcam.core.regions import geojson
from napari_gradcam.core.regions.bounded_json import JSONLimitError, JSONLimits, loads_bounded
from napari_gradcam.core.regions.geojson import (
    GeoJSONError,
    dumps,
    from_geojson,
    read_geojson,
)


def polygon_feature(coordinates: list, **properties) -> dict:
    geometry = {"type": "Polygon", "coordinates": [coordinates]}
    return {"type": "Feature", "geometry": geometry, "properties": properties}


SQUARE_XY = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]


def test_a_five_million_vertex_polygon_is_refused_fast_and_small(tmp_path):
    vertices = ",".join(f"[{i % 9973}.5,{i % 7919}.5]" for i in range(5_000_000))
    path = tmp_path / "huge.geojson"
    path.write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","geometry":'
        f'{{"type":"Polygon","coordinates":[[{vertices}]]}},"properties":{{}}}}]}}'
    )
    del vertices
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(GeoJSONError, match=r"5,000,00[0-9] coordinate arrays.*simplify"):
        read_geojson(path)
    seconds = time.perf_counter() - start
    _now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = path.stat().st_size
    assert seconds < 2.0, seconds  # 0.2 to 0.4 s alone; 2 shared cores are noisy
    assert peak < 4 * size, (peak, size)  # the bytes, their copy with blank strings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 5000 + "]" * 5000, "5000 deep"),
        ('{"a": ' * 100 + "1" + "}" * 100, "100 deep"),
        ("[" + "9" * 5000 + "]", "number longer than 64"),
        ('{"type": "Feature", "id": 1e' + "0" * 80 + "}", "number longer than 64"),
        ("{not json", "not valid JSON"),
        (b'"\xff"', "not UTF-8"),
    ],
)
def test_deep_long_and_broken_json_is_refused_with_a_message(text, message):
    with pytest.raises(JSONLimitError, match=message):
        loads_bounded(text)


def test_brackets_and_digits_inside_strings_are_not_counted():
    text = json.dumps({"note": "[" * 500 + "1" * 500 + "{" * 500, "n": [[1, 2]]})
    assert loads_bounded(text, JSONLimits(max_arrays=2, max_depth=3))["n"] == [[1, 2]]
    escaped = json.dumps({"note": 'a \\" [[[[[ "', "n": 1})
    assert loads_bounded(escaped, JSONLimits(max_depth=1))["n"] == 1


def test_the_file_limits_come_from_the_module_caps(tmp_path, monkeypatch):
    path = tmp_path / "deep.geojson"
    path.write_text(json.dumps(polygon_feature(SQUARE_XY, extra=[[[[[[[[1]]]]]]]])))
    assert len(read_geojson(path).annotations) == 1
    monkeypatch.setattr(geojson, "MAX_DEPTH", 6)
    with pytest.raises(GeoJSONError, match=r"deep\.geojson nests .* more than the 6"):
        read_geojson(path)


@pytest.mark.parametrize(
    ("classification", "label", "colour"),
    [
        ({"name": "Tumor", "colorRGB": -3670016}, "Tumor", (200, 0, 0)),
        ({"name": "Stroma", "colorRGB": 0xFF96C896}, "Stroma", (150, 200, 150)),
        ({"name": "Other", "colorRGB": 0x00FF00}, "Other", (0, 255, 0)),
        (
            {
                "name": "Fourth",
                "colorRGB": -16776961,
                "parentClass": {
                    "name": "Third",
                    "parentClass": {"name": "Second", "parentClass": {"name": "First"}},
                },
            },
            "First: Second: Third: Fourth",
            (0, 0, 255),
        ),
    ],
)
def test_qupath_0_2_classes_keep_colour_and_full_name(classification, label, colour):
    result = from_geojson([polygon_feature(SQUARE_XY, classification=classification)])
    (annotation,) = result.annotations
    assert (annotation.label, annotation.colour) == (label, colour)
    written = json.loads(dumps(result.annotations))["features"][0]["properties"]
    names = label.split(": ")
    key = {"names": names} if len(names) > 1 else {"name": label}
    assert written["classification"] == {**key, "color": list(colour)}


def test_an_object_over_the_image_edge_is_kept_whole_with_a_note():
    over = [[-20, -20], [50, -20], [50, 50], [-20, 50], [-20, -20]]
    result = from_geojson([polygon_feature(over)], image_shape=(40, 40))
    assert len(result.annotations) == 1 and result.skipped == []
    assert "beyond the 40 x 40 image; kept whole" in result.notes[0]
    written = json.loads(dumps(result.annotations))["features"][0]["geometry"]["coordinates"][0]
    assert sorted(map(tuple, written[:-1])) == sorted(map(tuple, over[:-1]))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
GEOMETRY_TYPES = st.sampled_from(
    [
        "Polygon",
        "MultiPolygon",
        "LineString",
        "MultiLineString",
        "Point",
        "MultiPoint",
        "GeometryCollection",
        "Circle",
        3,
    ]
)
FEATURES = st.fixed_dictionaries(
    {"type": st.just("Feature")},
    optional={
        "geometry": st.fixed_dictionaries(
            {"type": GEOMETRY_TYPES},
            optional={
                "coordinates": JSON_VALUES,
                "geometries": JSON_VALUES,
                "plane": st.dictionaries(st.sampled_from("czt"), JSON_VALUES) | JSON_VALUES,
                "isEllipse": JSON_VALUES,
            },
        ),
        "properties": st.dictionaries(
            st.sampled_from(
                [
                    "classification",
                    "measurements",
                    "metadata",
                    "name",
                    "color",
                    "objectType",
                    "isLocked",
                    "other",
                ]
            ),
            JSON_VALUES,
        ),
        "id": JSON_VALUES,
        "nucleusGeometry": JSON_VALUES,
    },
)
ANY_GEOJSON = (
    JSON_VALUES
    | st.lists(FEATURES, max_size=3)
    | st.builds(lambda f: {"type": "FeatureCollection", "features": f}, st.lists(FEATURES))
)


@pytest.mark.slow  # a long fuzz: hundreds of random documents
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_GEOJSON)
def test_any_json_gives_annotations_or_a_value_error(data):
    try:
        result = from_geojson(data, image_shape=(100, 100))
    except ValueError as err:
        assert str(err)
        return
    for annotation in result.annotations:
        assert np.all(np.isfinite(annotation.geometry.vertices))
    json.loads(dumps(result.annotations))
    assert all(message for message in [*result.skipped, *result.notes])


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60) | st.binary(max_size=60))
def test_any_text_parses_within_limits_or_says_why(text):
    try:
        loads_bounded(text)
    except JSONLimitError as err:
        assert str(err)
