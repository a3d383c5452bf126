"""Per-tile results as QuPath tile objects."""

import json
import math

import numpy as np
import pytest

from napari_gradcam.core.regions.geojson import read_geojson
from napari_gradcam.core.regions.qupath_tiles import tile_annotations, write_tiles_geojson

BOXES = np.array([[0, 0, 96, 96], [0, 48, 96, 144], [48, 0, 144, 96]], dtype=float)
COLUMNS = {
    "tile": [0, 1, 5],
    "class": ["stroma", "tumour", "stroma"],
    "probability": [0.9, 0.55, 0.7],
    "entropy": np.array([0.2, 0.95, np.nan], dtype=np.float32),
    "noisy": [False, True, False],
    "target": ["stroma", "tumour", "stroma"],
    "score": ["", 1.5, 2.0],
}


def test_each_tile_is_a_square_with_its_numbers_as_measurements():
    tiles = tile_annotations(BOXES, COLUMNS)
    assert [t.label for t in tiles] == ["stroma", "tumour", "stroma"]
    assert tiles[0].colour == tiles[2].colour != tiles[1].colour
    assert {t.qupath.object_type for t in tiles} == {"tile"}
    second = tiles[1].measurements
    assert second["probability"] == 0.55 and second["noisy"] == 1.0 and second["tile"] == 1
    assert second["entropy"] == pytest.approx(0.95)
    assert math.isnan(tiles[2].measurements["entropy"]) and math.isnan(
        tiles[0].measurements["score"]
    )
    assert tiles[1].qupath.metadata == {"target": "tumour"}
    assert tiles[0].polygons[0].area == 96 * 96


def test_the_file_has_tiles_where_the_boxes_are_and_is_strict_json(tmp_path):
    path = write_tiles_geojson(tmp_path / "tiles.geojson", BOXES, COLUMNS, object_type="detection")
    features = json.loads(path.read_text(), parse_constant=lambda token: 1 / 0)["features"]
    ring = np.asarray(features[1]["geometry"]["coordinates"][0])
    assert ring[:, 0].min() == 48 and ring[:, 0].max() == 144  # x: columns 48 to 143 inclusive
    assert ring[:, 1].min() == 0 and ring[:, 1].max() == 96
    assert features[2]["properties"]["measurements"]["entropy"] == "NaN"
    assert features[0]["properties"]["objectType"] == "detection"
    assert features[0]["properties"]["classification"]["color"]
    back = read_geojson(path).annotations
    assert [b.measurements["probability"] for b in back] == COLUMNS["probability"]
    with pytest.raises(FileExistsError):
        write_tiles_geojson(path, BOXES, COLUMNS)


def test_mismatched_columns_and_unknown_types_are_refused():
    with pytest.raises(ValueError, match="'probability' has 2 values for 3 tiles"):
        tile_annotations(BOXES, {"probability": [0.1, 0.2]})
    with pytest.raises(ValueError, match="object_type"):
        tile_annotations(BOXES, COLUMNS, object_type="cell")
