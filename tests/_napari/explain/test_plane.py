import numpy as np
import pytest
from napari.layers import Image

from napari_gradcam._napari.plane import Plane, choose_level, current_plane, read_crop
from napari_gradcam._napari.regions import Box


def test_2d_rgb_plane_is_the_data():
    data = np.zeros((20, 30, 3), np.uint8)
    plane = current_plane(Image(data, rgb=True), (0.0, 0.0))
    assert plane.levels[0] is data
    assert plane.shape == (20, 30) and plane.slice_index == ()


@pytest.mark.parametrize("rgb", [False, True])
def test_stack_plane_is_the_current_slice(rgb):
    data = np.arange(4 * 3 * 20 * 30 * (3 if rgb else 1)).reshape(4, 3, 20, 30, *([3] * rgb))
    layer = Image(data, rgb=rgb, scale=(2.0, 1.0, 0.5, 0.5), translate=(10.0, 0, 0, 0))
    plane = current_plane(layer, (14.2, 1.0, 0.0, 0.0))
    assert plane.slice_index == (2, 1)
    np.testing.assert_array_equal(plane.levels[0], data[2, 1])


def test_multiscale_plane_has_every_level_and_its_downsample():
    levels = [np.zeros((64, 96)), np.zeros((32, 48)), np.zeros((16, 24))]
    layer = Image(levels, multiscale=True, metadata={"mpp": 0.25})
    plane = current_plane(layer, (0.0, 0.0))
    assert plane.downsamples == ((1.0, 1.0), (2.0, 2.0), (4.0, 4.0))
    assert plane.mpp == 0.25


def test_choose_level_matches_the_model_resolution():
    levels = (np.zeros((64, 64)), np.zeros((32, 32)), np.zeros((16, 16)))
    plane = Plane(levels, ((1.0, 1.0), (2.0, 2.0), (4.0, 4.0)), mpp=0.25)
    assert choose_level(plane, 0.5) == 1
    assert choose_level(plane, 2.0) == 2
    assert choose_level(plane, None) == 0
    assert choose_level(Plane(levels, plane.downsamples), 0.5) == 0


def test_read_crop_widens_to_whole_level_pixels():
    level = np.arange(32 * 48).reshape(32, 48)
    plane = Plane((np.zeros((64, 96)), level), ((1.0, 1.0), (2.0, 2.0)))
    crop = read_crop(plane, Box(5, 10, 20, 31), level=1)
    np.testing.assert_array_equal(crop.pixels, level[2:10, 5:16])
    assert crop.origin == (4.0, 10.0) and crop.downsample == (2.0, 2.0)
