import numpy as np
import pytest

from napari_gradcam.core.regions.hot_regions import hot_region_polygons, hot_regions, hot_threshold
from napari_gradcam.core.regions.placement import (
    cells_to_pixels,
    heatmap_transform,
    pixels_to_cells,
)
from napari_gradcam.core.regions.polygons import (
    polygons_mask,
)


@pytest.fixture
def ring_map() -> np.ndarray:
    """A 20 x 24 map: a square ring with a 3 x 3 hole, a 2 x 3 blob and a one-cell speck."""
    cam = np.full((20, 24), 0.1)
    cam[2:11, 2:11] = 1.0
    cam[5:8, 5:8] = 0.2
    cam[14:16, 16:19] = 0.8
    cam[17, 3] = 0.9
    return cam


def test_energy_threshold_keeps_the_hottest_cells_holding_that_share():
    cam = np.array([[4.0, 0.0], [3.0, 3.0]])
    assert hot_threshold(cam, "energy", 0.4) == 4.0
    assert hot_threshold(cam, "energy", 0.5) == 3.0
    assert hot_threshold(cam, "energy", 1.0) == 3.0
    assert hot_threshold(np.zeros((3, 3)), "energy", 0.5) == np.inf
    assert hot_threshold(cam, "fraction", 0.25) == 1.0
    assert hot_threshold(cam, "value", 7.5) == 7.5


@pytest.mark.parametrize(
    ("cam", "mode", "amount", "message"),
    [
        (np.ones((2, 2)), "energy", 1.5, r"\[0, 1\]"),
        (np.ones((2, 2)), "median", 0.5, "unknown threshold mode"),
        (np.array([[np.nan, 1.0]]), "value", 0.5, "NaN"),
    ],
)
def test_bad_thresholds_say_why(cam, mode, amount, message):
    with pytest.raises(ValueError, match=message):
        hot_threshold(cam, mode, amount)


def test_regions_keep_holes_drop_specks_and_enclose_exactly_the_hot_cells(ring_map):
    regions = hot_regions(ring_map, 0.5, min_cells=2)
    assert len(regions) == 2
    big, blob = regions
    assert len(big.holes) == 1 and blob.holes == ()
    expected = ring_map >= 0.5
    expected[17, 3] = False
    np.testing.assert_array_equal(polygons_mask(regions, ring_map.shape), expected)
    assert big.area == pytest.approx(72, abs=2)


def test_simplification_keeps_few_vertices_and_regions_touching_the_edge_close():
    cam = np.zeros((30, 30))
    yy, xx = np.mgrid[:30, :30]
    cam[(yy - 15) ** 2 + (xx - 15) ** 2 < 100] = 1.0
    cam[:4, :] = 1.0
    disc, band = hot_regions(cam, 0.5, tolerance=0.5)
    assert len(disc.exterior) < 40
    assert band.exterior[:, 0].min() == -0.5 and band.exterior[:, 1].max() == 29.5
    mismatched = polygons_mask([disc, band], cam.shape) != (cam >= 0.5)
    assert mismatched.sum() <= 8  # simplification may move the outline by half a cell


def test_diagonal_neighbours_are_separate_regions():
    cam = np.zeros((8, 8))
    cam[1:3, 1:3] = cam[3:5, 3:5] = 1.0
    assert len(hot_regions(cam, 0.5)) == 2


def test_cell_to_pixel_mapping_agrees_with_the_alignment_formula():
    stride, origin = (8.0, 6.0), (16.0, 30.0)
    scale, translate = (0.7, 1.3), (10.0, -25.0)
    heat_scale, heat_translate = heatmap_transform(stride, origin, scale, translate)
    cells = np.array([[0.0, 0.0], [3.25, -0.5], [11.5, 7.0]])
    cell_world = np.asarray(heat_translate) + cells * np.asarray(heat_scale)
    pixels = cells_to_pixels(cells, stride, origin)
    np.testing.assert_allclose(np.asarray(translate) + pixels * np.asarray(scale), cell_world)
    np.testing.assert_allclose(pixels_to_cells(pixels, stride, origin), cells)
    # the first cell's outer edge is the crop's outer pixel edge
    np.testing.assert_allclose(pixels[1, 1], origin[1] - 0.5)


def test_region_polygons_in_pixels_cover_the_hot_cells_footprint(ring_map):
    stride, origin = (8.0, 8.0), (16.0, 32.0)
    polygons = hot_region_polygons(ring_map, stride, origin, mode="value", amount=0.5)
    image_shape = (16 + 20 * 8, 32 + 24 * 8)
    inside = polygons_mask(polygons, image_shape)
    hot_cells = ring_map >= 0.5
    hot_cells[17, 3] = False
    centres = cells_to_pixels(np.argwhere(np.ones_like(ring_map, dtype=bool)), stride, origin)
    centres = np.round(centres).astype(int)
    np.testing.assert_array_equal(inside[centres[:, 0], centres[:, 1]], hot_cells.ravel())
    assert not inside[:16].any() and not inside[:, :32].any()


def test_nearby_regions_merge_and_only_the_hottest_are_kept():
    cam = np.zeros((20, 30))
    cam[2:5, 2:5] = 1.0  # 9 cells
    cam[2:5, 6:9] = 1.0  # one empty column away: merges
    cam[12:14, 20:22] = 0.5  # 4 cells, far away
    cam[15:19, 2:6] = 0.3  # 16 cells, but less heat (4.8) than 9 cells of 1.0
    apart = hot_regions(cam, 0.2)
    assert len(apart) == 4
    merged = hot_regions(cam, 0.2, merge_cells=1.0)
    assert len(merged) == 3 and merged[0].area == pytest.approx(3 * 7, abs=1)  # and the gap
    hottest = hot_regions(cam, 0.2, merge_cells=1.0, max_regions=2)
    assert [p.area for p in hottest] == pytest.approx([21, 16], abs=1)


def test_minimum_area_and_merging_are_in_image_pixels():
    cam = np.zeros((10, 10))
    cam[1:3, 1:3] = 1.0
    cam[1:3, 4:6] = 1.0
    cam[7:9, 7:8] = 1.0
    stride = (8.0, 8.0)
    assert len(hot_region_polygons(cam, stride, mode="value", amount=0.5)) == 3
    big = hot_region_polygons(cam, stride, mode="value", amount=0.5, min_area_px=3 * 64)
    assert len(big) == 2
    merged = hot_region_polygons(cam, stride, mode="value", amount=0.5, merge_px=8.0)
    assert len(merged) == 2
