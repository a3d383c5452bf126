import numpy as np
import pytest
from napari.layers import Image

from napari_gradcam._napari.explain.job import ExplainJob, RegionResult
from napari_gradcam._napari.heatmap_style import HEATMAP_COLORMAP
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.result_layers import (
    METADATA_KEY,
    annotations_layer,
    contrast_limits,
    heatmap_layer,
)
from napari_gradcam.core.explain.explanation import Explanation

JOB = ExplainJob("demo", "weights.pt")


def world_edges(layer: Image) -> np.ndarray:
    """World (low, high) of the outer pixel edges of the last two axes."""
    extent = layer.extent
    half = extent.step[-2:] / 2
    return np.stack([extent.world[0, -2:] - half, extent.world[1, -2:] + half])


def make_result(cam: np.ndarray, stride=(4.0, 4.0), origin=(0.0, 0.0), box=None) -> RegionResult:
    explanation = Explanation(
        cam=cam.astype(np.float32),
        method="gradcam",
        layer="features.4",
        targets=np.array([1]),
        target_names=("tissue",),
        scores=np.array([2.5], np.float32),
        probabilities=np.array([0.75], np.float32),
        stride=stride,
        origin=origin,
        input_shape=(0, 0),
    )
    return RegionResult(box or Box(0, 0, 64, 96), explanation, stride, origin, level=0)


def test_contrast_limits_of_flat_and_varying_maps():
    assert contrast_limits(np.zeros((3, 3))) == (0.0, 1.0)
    assert contrast_limits(np.array([[1.0, 3.0]])) == (1.0, 3.0)


def test_heatmap_covers_the_image_it_explains():
    image = Image(np.zeros((64, 96)), scale=(0.7, 1.3), translate=(10, -25))
    data, kwargs, kind = heatmap_layer(make_result(np.random.rand(16, 24)), image, JOB)
    heatmap = Image(data, **kwargs)
    assert kind == "image" and data.shape == (16, 24)
    np.testing.assert_allclose(world_edges(heatmap), world_edges(image), atol=1e-9)
    assert kwargs["colormap"].name == HEATMAP_COLORMAP and kwargs["interpolation2d"] == "linear"
    facts = kwargs["metadata"][METADATA_KEY]
    assert facts["target_name"] == "tissue" and facts["probability"] == pytest.approx(0.75)
    assert (facts["model"], facts["weights"], facts["slice"]) == ("demo", "weights.pt", ())
    assert facts["image_layer"] == "Image"  # the image's name is in the record, not the name
    assert kwargs["name"] == "Grad-CAM · tissue (top class) · weights"


def test_heatmap_of_a_crop_covers_the_crop():
    image = Image(np.zeros((64, 96)), scale=(0.7, 1.3), translate=(10, -25))
    box = Box(8, 16, 40, 64, "rectangle 0")
    result = make_result(np.random.rand(8, 12), origin=(8.0, 16.0), box=box)
    data, kwargs, _ = heatmap_layer(result, image, JOB)
    heatmap = Image(data, **kwargs)
    expected = np.array([[10 + 0.7 * 7.5, -25 + 1.3 * 15.5], [10 + 0.7 * 39.5, -25 + 1.3 * 63.5]])
    np.testing.assert_allclose(world_edges(heatmap), expected, atol=1e-9)


def test_heatmap_follows_a_rotated_image():
    image = Image(np.zeros((64, 96)), scale=(0.7, 1.3), translate=(10, -25), rotate=30)
    result = make_result(np.random.rand(8, 12), origin=(8.0, 16.0))
    data, kwargs, _ = heatmap_layer(result, image, JOB)
    heatmap = Image(data, **kwargs)
    # the centre of map cell (2, 3) is image pixel 8 + 2 * 4 + 1.5, 16 + 3 * 4 + 1.5
    np.testing.assert_allclose(
        heatmap.data_to_world((2, 3)), image.data_to_world((17.5, 29.5)), atol=1e-9
    )


def test_heatmap_follows_a_sheared_rotated_image():
    image = Image(np.zeros((64, 96)), scale=(0.7, 1.3), translate=(10, -25), rotate=30, shear=[0.4])
    result = make_result(np.random.rand(8, 12), origin=(8.0, 16.0))
    data, kwargs, _ = heatmap_layer(result, image, JOB)
    heatmap = Image(data, **kwargs)
    for cell, pixel in [((2, 3), (17.5, 29.5)), ((0, 0), (9.5, 17.5)), ((7, 11), (37.5, 61.5))]:
        np.testing.assert_allclose(
            heatmap.data_to_world(cell), image.data_to_world(pixel), atol=1e-9
        )


def test_annotations_layer_is_placed_like_the_image():
    image = Image(np.zeros((2, 64, 96)), scale=(1, 0.5, 0.25), translate=(0, 3, 4))
    shapes = annotations_layer(image)
    assert shapes.ndim == 2 and shapes.name == "annotations"
    np.testing.assert_allclose(shapes.scale, (0.5, 0.25))
    np.testing.assert_allclose(shapes.translate, (3, 4))
