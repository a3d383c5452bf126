import math

import numpy as np
import pytest

from napari_gradcam.core.regions.placement import cells_to_pixels
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.region_stats import (
    STATISTICS,
    PlacedMap,
    expand_box,
    pixel_box,
    region_statistics,
)

STRIDE, ORIGIN = (8.0, 8.0), (16.0, 32.0)


@pytest.fixture
def heatmap() -> PlacedMap:
    cam = np.arange(60, dtype=float).reshape(6, 10)
    return PlacedMap(cam, STRIDE, ORIGIN)


def cell_square(y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
    """A square ring through cell coordinates, mapped to pixels."""
    ring = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
    return cells_to_pixels(ring, STRIDE, ORIGIN)


def test_statistics_of_the_cells_inside_a_square(heatmap):
    square = Polygon(cell_square(0.5, 1.5, 3.5, 4.5))  # cells rows 1-3, columns 2-4
    stats = region_statistics([square], heatmap, mpp=0.5)
    inside = heatmap.cam[1:4, 2:5]
    assert list(stats) == list(STATISTICS)
    assert stats["mean"] == pytest.approx(inside.mean())
    assert stats["max"] == inside.max()
    assert stats["p95"] == pytest.approx(np.percentile(inside, 95))
    assert stats["energy_share"] == pytest.approx(inside.sum() / heatmap.cam.sum())
    assert stats["cells"] == 9
    assert stats["area_px"] == pytest.approx(9 * 64)
    assert stats["area_um2"] == pytest.approx(9 * 64 * 0.25)
    assert math.isnan(stats["probability"])


def test_holes_are_left_out_and_area_needs_mpp(heatmap):
    hole = cell_square(1.5, 2.5, 2.5, 3.5)  # the middle cell (2, 3)
    stats = region_statistics([Polygon(cell_square(0.5, 1.5, 3.5, 4.5), (hole,))], heatmap)
    assert stats["cells"] == 8
    assert stats["max"] == heatmap.cam[3, 4]
    assert stats["area_px"] == pytest.approx(8 * 64)
    assert math.isnan(stats["area_um2"])


def test_a_region_smaller_than_a_cell_reads_the_cell_under_it(heatmap):
    speck = Polygon(cell_square(2.1, 3.1, 2.3, 3.3))
    stats = region_statistics([speck], heatmap)
    assert stats["cells"] == 1 and stats["mean"] == heatmap.cam[2, 3]


def test_a_region_off_the_map_has_no_map_statistics(heatmap):
    far = Polygon(cell_square(40, 40, 42, 42))
    stats = region_statistics([far], heatmap)
    assert stats["cells"] == 0 and math.isnan(stats["mean"]) and stats["area_px"] > 0


def test_probability_comes_from_the_callback_with_the_pixel_box(heatmap):
    boxes = []

    def probability(box):
        boxes.append(box)
        return 0.75

    square = Polygon(np.array([[10.2, 20.0], [10.2, 30.5], [19.9, 30.5], [19.9, 20.0]]))
    stats = region_statistics([square], heatmap, image_shape=(100, 100), probability=probability)
    assert stats["probability"] == 0.75
    assert boxes == [(11, 20, 20, 31)]


def test_pixel_boxes_are_clipped_to_the_image_and_grown_for_the_model():
    square = Polygon(np.array([[-5.0, -5.0], [-5.0, 3.0], [3.0, 3.0], [3.0, -5.0]]))
    assert pixel_box([square], (10, 10)) == (0, 0, 4, 4)
    outside = Polygon(square.exterior + 50)
    assert pixel_box([outside], (10, 10)) is None
    assert expand_box((0, 0, 4, 4), (8, 6), (10, 10)) == (0, 0, 8, 6)
    assert expand_box((5, 5, 9, 9), (8, 8), (10, 10)) == (2, 2, 10, 10)
    assert expand_box((2, 2, 4, 4), (32, 32), (10, 12)) == (0, 0, 10, 12)
