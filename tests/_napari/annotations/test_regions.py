import numpy as np
import pytest
from napari.layers import Image, Shapes

from napari_gradcam._napari.regions import (
    FIELD_OF_VIEW,
    Box,
    field_of_view_box,
    rectangle_boxes,
    snap_box,
    whole_layer_box,
)

SCALE, TRANSLATE = (0.7, 1.3), (10.0, -25.0)


@pytest.fixture
def image() -> Image:
    return Image(np.zeros((64, 96), np.uint8), scale=SCALE, translate=TRANSLATE)


def world(data_yx) -> np.ndarray:
    return np.asarray(TRANSLATE) + np.asarray(SCALE) * np.asarray(data_yx, dtype=float)


def test_whole_layer_box_covers_the_plane():
    assert whole_layer_box((64, 96)) == Box(0, 0, 64, 96)


def test_snap_box_keeps_pixels_with_centres_inside_and_clips():
    corners = np.array([[-3.2, 10.4], [20.4, 200.0]])
    assert snap_box(corners, (64, 96), "r") == Box(0, 11, 21, 96, "r")
    edges = np.array([[7.5, 15.5], [39.5, 63.5]])
    assert snap_box(edges, (64, 96), "r") == Box(8, 16, 40, 64, "r")
    centres = np.array([[8 + 1e-9, 16 - 1e-9], [39 - 1e-9, 63 + 1e-9]])
    assert snap_box(centres, (64, 96), "r") == Box(8, 16, 40, 64, "r")


def test_snap_box_outside_the_plane_is_none():
    assert snap_box(np.array([[70.0, 0.0], [80.0, 10.0]]), (64, 96), "r") is None


def test_rectangles_in_another_layers_coordinates(image):
    # edges of image pixels 8..40 (rows) and 16..64 (columns), drawn in a shapes layer
    # with its own scale and translate
    edges = world([[7.5, 15.5], [39.5, 63.5]])
    shapes_scale, shapes_translate = np.array([2.0, 0.5]), np.array([-4.0, 3.0])
    data = (edges - shapes_translate) / shapes_scale
    rectangle = np.array([data[0], [data[0, 0], data[1, 1]], data[1], [data[1, 0], data[0, 1]]])
    outside = rectangle + 1000
    shapes = Shapes(
        [rectangle, outside, rectangle[:3]],
        shape_type=["rectangle", "rectangle", "polygon"],
        scale=shapes_scale,
        translate=shapes_translate,
    )
    assert rectangle_boxes(image, shapes, (64, 96), (0.0, 0.0)) == [
        Box(8, 16, 40, 64, "rectangle 0")
    ]


def test_only_selected_rectangles_when_some_are_selected(image):
    first = np.array([[0, 0], [0, 30], [20, 30], [20, 0]], dtype=float)
    shapes = Shapes([first, first + 5], shape_type="rectangle")
    shapes.selected_data = {1}
    (box,) = rectangle_boxes(image, shapes, (64, 96), (0.0, 0.0))
    assert box.label == "rectangle 1"


def test_field_of_view_is_the_visible_part_of_the_image(image):
    center = world([30.2, 40.2])
    box = field_of_view_box(image, (64, 96), (0.0, *center), 10.0, (140, 130), (0.0, 0.0))
    # half the canvas spans 7 x 6.5 world units: 10 x 5 image pixels around the centre
    assert box == Box(21, 36, 41, 46, FIELD_OF_VIEW)


def test_field_of_view_is_clipped_and_none_when_off_image(image):
    zoomed_out = field_of_view_box(image, (64, 96), (0, 0, 0), 0.01, (600, 800), (0, 0))
    assert zoomed_out == Box(0, 0, 64, 96, FIELD_OF_VIEW)
    far_away = field_of_view_box(image, (64, 96), (0, 1e5, 1e5), 1.0, (600, 800), (0, 0))
    assert far_away is None
