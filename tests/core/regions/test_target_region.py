"""The region a target is about: boxes, annotation files and mask images, on any grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from PIL import Image

from napari_gradcam.core.regions.geojson import Annotation, write_geojson
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.target_region import (
    box_polygon,
    check_same_extent,
    is_box,
    mask_grid,
    polygons_on_grid,
    read_region,
    read_region_mask,
    stretched_mask,
)

TRIANGLE = Polygon(np.array([[3.2, 4.0], [40.7, 9.5], [20.0, 55.1]]))


def test_a_box_covers_exactly_its_pixels():
    (polygon,) = read_region("5, 3, 7, 4")
    mask = polygons_on_grid([polygon], (20, 20), (20, 20))
    expected = np.zeros((20, 20), bool)
    expected[3:7, 5:12] = True
    np.testing.assert_array_equal(mask, expected)
    assert is_box("1,2,3,4") and not is_box("regions.geojson")


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "0,0,0,5"])
def test_a_bad_box_says_how_to_write_one(text):
    with pytest.raises(ValueError, match=r"x,y,w,h|empty"):
        box_polygon(text)


def test_a_coarser_grid_holds_the_cells_whose_centres_lie_inside():
    """Reference: each grid cell's centre, in image pixels, tested against the polygon."""
    image, grid = (60, 50), (15, 20)
    mask = polygons_on_grid([TRIANGLE], image, grid)
    shape = shapely.Polygon(TRIANGLE.exterior)
    for row in range(grid[0]):
        for col in range(grid[1]):
            y = (row + 0.5) * image[0] / grid[0] - 0.5
            x = (col + 0.5) * image[1] / grid[1] - 0.5
            assert mask[row, col] == shape.contains(shapely.Point(y, x)), (row, col)
    assert mask.any()


def test_the_grid_stays_under_the_pixel_cap():
    assert mask_grid((100, 60), 10_000) == (100, 60)
    for cap in (1_000, 777, 50):
        height, width = mask_grid((100_003, 59_999), cap)
        assert height * width <= cap
        assert abs(height / 100_003 - width / 59_999) < 2 / min(height, width)


def test_a_stretched_mask_takes_the_pixel_under_each_centre():
    mask = np.random.default_rng(0).random((7, 9)) > 0.5
    big = stretched_mask(mask, (21, 36))
    for row in range(21):
        for col in range(36):
            assert big[row, col] == mask[int((row + 0.5) / 3), int((col + 0.5) / 4)]
    np.testing.assert_array_equal(stretched_mask(mask, (7, 9)), mask)


def test_an_annotation_file_gives_all_its_areas(tmp_path):
    path = tmp_path / "tumour.geojson"
    square = Polygon(np.array([[10.0, 10.0], [10.0, 20.0], [20.0, 20.0], [20.0, 10.0]]))
    write_geojson(path, [Annotation((TRIANGLE,), "Tumor"), Annotation((square,), "Other")])
    polygons = read_region(str(path))
    assert len(polygons) == 2
    mask = polygons_on_grid(polygons, (64, 64), (64, 64))
    assert mask[15, 15] and mask[20, 20] and not mask[60, 2]


def test_a_file_without_areas_or_missing_is_refused(tmp_path):
    points = tmp_path / "points.geojson"
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}
    points.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    with pytest.raises(ValueError, match="no area"):
        read_region(str(points))
    with pytest.raises(ValueError, match="neither an x,y,w,h box nor an existing GeoJSON"):
        read_region(str(tmp_path / "absent.geojson"))


def test_a_labels_image_gives_one_label_or_every_object(tmp_path):
    labels = np.zeros((12, 16), np.uint8)
    labels[2:5, 3:9] = 1
    labels[7:11, 10:14] = 2
    path = tmp_path / "labels.png"
    Image.fromarray(labels).save(path)
    np.testing.assert_array_equal(read_region_mask(path), labels > 0)
    np.testing.assert_array_equal(read_region_mask(path, label=2), labels == 2)
    with pytest.raises(ValueError, match="no pixel labelled 3"):
        read_region_mask(path, label=3)


def test_a_colour_mask_is_refused(tmp_path):
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 255
    path = tmp_path / "colour.png"
    Image.fromarray(colour).save(path)
    with pytest.raises(ValueError, match="colour image; a region mask needs one channel"):
        read_region_mask(path)


def test_a_mask_must_cover_the_image():
    check_same_extent((100, 60), (100, 60), "m")
    check_same_extent((25, 15), (100, 60), "m")
    with pytest.raises(ValueError, match="40 x 40 pixels but the image is 100 x 60"):
        check_same_extent((40, 40), (100, 60), "m")


def test_a_mask_a_pixel_off_the_image_still_covers_it():
    check_same_extent((101, 60), (100, 60), "m")
    with pytest.raises(ValueError, match="give a mask of the image's size"):
        check_same_extent((200, 120), (100, 60), "m")


def test_an_image_given_as_a_region_says_how_to_compare_with_it(tmp_path):
    image = tmp_path / "ref.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    with pytest.raises(ValueError, match=r"--like-image ref\.png --like-region 0,0,96,96"):
        read_region(str(image))
