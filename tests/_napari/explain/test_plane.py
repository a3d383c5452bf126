from dataclasses import replace

import numpy as np
import pytest
from napari.layers import Image

from napari_gradcam._napari.plane import Plane, current_plane, plane_sampling, read_crop
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


def test_plane_sampling_reads_the_level_at_the_model_resolution():
    levels = (np.zeros((64, 64)), np.zeros((32, 32)), np.zeros((16, 16)))
    plane = Plane(levels, ((1.0, 1.0), (2.0, 2.0), (4.0, 4.0)), mpp=0.25)
    assert plane_sampling(plane, 0.5) == (1, 1.0)
    assert plane_sampling(plane, 2.0) == (2, 2.0)
    assert plane_sampling(plane, None) == (0, 1.0)
    assert plane_sampling(Plane(levels, plane.downsamples), 0.5) == (0, 1.0)
    with pytest.raises(ValueError, match="upsampling"):
        plane_sampling(plane, 0.1)


def test_read_crop_widens_to_whole_level_pixels():
    level = np.arange(32 * 48).reshape(32, 48)
    plane = Plane((np.zeros((64, 96)), level), ((1.0, 1.0), (2.0, 2.0)))
    crop = read_crop(plane, Box(5, 10, 20, 31), level=1)
    np.testing.assert_array_equal(crop.pixels, level[2:10, 5:16])
    assert crop.origin == (4.0, 10.0) and crop.downsample == (2.0, 2.0)


def test_read_crop_resamples_to_the_model_pixel_size():
    level = np.repeat(np.repeat(np.arange(12 * 16).reshape(12, 16), 3, 0), 3, 1)
    plane = Plane((np.zeros((72, 96)), level), ((2.0, 2.0), (2.0, 2.0)))
    crop = read_crop(plane, Box(12, 18, 48, 66), level=1, resample=3.0)
    np.testing.assert_array_equal(crop.pixels, np.arange(12 * 16).reshape(12, 16)[2:8, 3:11])
    assert crop.origin == (12.0, 18.0) and crop.downsample == (6.0, 6.0)


@pytest.mark.parametrize("mpp", [0.3, 0.45, 1.0])
def test_one_box_and_its_tiles_are_read_at_the_same_level(mpp, tiny_spec, tiny_weights):
    """The box path and the tiled path share one rule (the tiny model wants 1 µm/px)."""
    from napari_gradcam._napari.explain.job import ExplainJob, explain_region
    from napari_gradcam._napari.explain.tiled_job import TilingOptions
    from napari_gradcam.models.cache import cached_model

    fine = np.random.default_rng(0).integers(0, 256, (480, 480, 3), dtype=np.uint8)
    levels = (fine, fine[::2, ::2], fine[::4, ::4])
    plane = Plane(levels, ((1.0, 1.0), (2.0, 2.0), (4.0, 4.0)), mpp=mpp)
    loaded = cached_model(tiny_spec, tiny_weights)
    box = Box(0, 0, 400, 400)
    job = ExplainJob(tiny_spec, tiny_weights, plane=plane, boxes=(box,))
    tiling = TilingOptions(tissue=False, batch_size=64)
    one = _run(explain_region(loaded, job, box, 0, None))
    tiled = _run(explain_region(loaded, replace(job, tiling=tiling), box, 0, None))
    assert tiled.geometry.level == one.level
    pixel = one.stride[0] / one.explanation.stride[0]
    assert tiled.stride[0] / 4 == pytest.approx(pixel)  # the tiny model's stride is 4
    assert pixel == pytest.approx(max(1.0, mpp * 2**one.level) / mpp)


def _run(generator):
    """Drive a job generator to its return value."""
    try:
        while True:
            next(generator)
    except StopIteration as stop:
        return stop.value
