"""The placement formula; normalisation for display."""

from __future__ import annotations

import numpy as np
import pytest

import napari_gradcam as ng
from tests.architectures import build


def test_map_cell_centres_land_on_their_pixel_blocks() -> None:
    # Cell (i, j) of a stride-8 map covers image pixels [8i, 8i + 8): centre 8i + 3.5.
    scale, translate = ng.heatmap_transform(
        (8, 8), origin=(16, 32), scale=(0.5, 2.0), translate=(5, -7)
    )
    cell = np.array([2, 3])
    world = np.asarray(translate) + cell * np.asarray(scale)
    pixel_centre = np.array([16 + 8 * 2 + 3.5, 32 + 8 * 3 + 3.5])
    np.testing.assert_allclose(world, np.array([5, -7]) + pixel_centre * np.array([0.5, 2.0]))


def test_map_world_extent_equals_image_extent() -> None:
    # A 12 x 10 map of a 96 x 80 image at stride 8: both span the same world box.
    s, t = np.array([0.7, 1.3]), np.array([10.0, -25.0])
    scale, translate = ng.heatmap_transform((8, 8), scale=s, translate=t)
    image_box = (t - 0.5 * s, t + (np.array([96, 80]) - 0.5) * s)
    map_box = (
        np.asarray(translate) - 0.5 * np.asarray(scale),
        np.asarray(translate) + (np.array([12, 10]) - 0.5) * np.asarray(scale),
    )
    np.testing.assert_allclose(map_box, image_box)


def test_transform_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same number of axes"):
        ng.heatmap_transform((8,), scale=(1, 1), translate=(0, 0), origin=(0, 0))
    with pytest.raises(ValueError, match="positive"):
        ng.heatmap_transform((0, 8))


def test_normalize_modes() -> None:
    cam = np.array([[[1.0, 3.0], [2.0, 5.0]], [[0.0, 0.0], [0.0, 0.0]]], np.float32)
    np.testing.assert_allclose(ng.normalize_cam(cam)[0], [[0.0, 0.5], [0.25, 1.0]])
    np.testing.assert_allclose(ng.normalize_cam(cam, "max")[0], [[0.2, 0.6], [0.4, 1.0]])
    assert ng.normalize_cam(cam)[1].max() == 0.0  # flat map: zeros, no NaN
    assert ng.normalize_cam(cam[0], "percentile", q=50).max() == 1.0
    with pytest.raises(ValueError, match="unknown normalisation"):
        ng.normalize_cam(cam, "zscore")


def test_normalize_does_not_change_the_raw_map() -> None:
    explanation = ng.explain(build("resnet"), np.random.default_rng(2).random((64, 64, 3)))
    raw = explanation.cam.copy()
    ng.normalize_cam(explanation.cam)
    np.testing.assert_array_equal(explanation.cam, raw)
    assert explanation.cam.max() != 1.0  # not min-max normalised
