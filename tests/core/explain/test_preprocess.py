"""Pixels of any common dtype and channel layout become the normalised batch the model expects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.preprocess import (
    match_channels,
    pixel_range,
    to_batch,
    to_unit_range,
)


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (np.array([0, 255], np.uint8), [0.0, 1.0]),
        (np.array([0, 65535], np.uint16), [0.0, 1.0]),
        (np.array([-128, 127], np.int8), [0.0, 1.0]),
        (np.array([False, True]), [0.0, 1.0]),
        (np.array([0.25, 0.75], np.float32), [0.25, 0.75]),
        (np.array([10.0, 30.0, 20.0]), [0.0, 1.0, 0.5]),
    ],
)
def test_unit_range(pixels: np.ndarray, expected: list[float]) -> None:
    result = to_unit_range(pixels)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_channels_gray_rgba_and_to_gray() -> None:
    gray = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert match_channels(gray, 3).shape == (3, 4, 3)
    np.testing.assert_array_equal(match_channels(gray, 3)[..., 2], gray)
    rgba = np.random.default_rng(0).random((3, 4, 4))
    np.testing.assert_array_equal(match_channels(rgba, 3), rgba[..., :3])
    np.testing.assert_allclose(match_channels(rgba, 1)[..., 0], rgba[..., :3].mean(-1))
    with pytest.raises(ValueError, match="2 channels but the model takes 3"):
        match_channels(np.zeros((3, 4, 2)), 3)


def test_to_batch_normalises_with_the_card() -> None:
    card = ModelCard(input_size=(2, 2), mean=(0.5, 0.0, 1.0), std=(0.5, 1.0, 2.0))
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0] = 255
    image[0, 0, 1] = 51
    batch = to_batch(image, card, torch.device("cpu"))
    assert batch.shape == (1, 3, 2, 3)
    assert batch.dtype == torch.float32
    np.testing.assert_allclose(batch[0, 0].numpy(), 1.0)  # (1 - 0.5) / 0.5
    assert batch[0, 1, 0, 0] == pytest.approx(0.2)  # 51 / 255
    np.testing.assert_allclose(batch[0, 2].numpy(), -0.5)  # (0 - 1) / 2


def test_uint16_grayscale_runs_through_explain(small_card) -> None:
    import napari_gradcam as ng
    from tests.architectures import build

    image = np.random.default_rng(1).integers(0, 4096, (40, 48), dtype=np.uint16)
    explanation = ng.explain(build("resnet"), image, card=small_card)
    assert explanation.cam.shape == (5, 6)


@pytest.mark.parametrize(
    ("dtype", "sample", "expected"),
    [
        (np.uint8, None, (0.0, 255.0)),
        (np.uint16, np.array([3, 9], np.uint16), (0.0, 65535.0)),
        (np.bool_, None, (0.0, 1.0)),
        (np.float32, np.array([0.2, 0.8]), (0.0, 1.0)),
        (np.float64, np.array([-2.0, 6.0]), (-2.0, 6.0)),
    ],
)
def test_pixel_range_is_the_rule_of_to_unit_range(dtype, sample, expected) -> None:
    assert pixel_range(dtype, sample) == expected
    if sample is not None:
        low, high = expected
        scaled = (sample.astype(np.float32) - low) / (high - low)
        np.testing.assert_allclose(to_unit_range(sample), scaled, rtol=1e-6)


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_stack_of_tiles_is_preprocessed_like_each_image(channels, dtype) -> None:
    card = ModelCard(input_size=(4, 4), mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    rng = np.random.default_rng(3)
    shape = (5, 6, 7) if channels is None else (5, 6, 7, channels)
    if dtype == np.float32:
        tiles = rng.uniform(-3.0, 5.0, shape).astype(dtype)
        tiles[0].flat[:2] = (-3.0, 5.0)  # each image then spans the stack's range
    else:
        tiles = rng.integers(0, 200, shape).astype(dtype)
    for tile in tiles[1:]:
        tile.flat[:2] = tiles[0].flat[:2]
    cpu = torch.device("cpu")
    stacked = to_batch(tiles, card, cpu, stacked=True, value_range=pixel_range(dtype, tiles))
    one_by_one = torch.cat([to_batch(tile, card, cpu) for tile in tiles])
    assert stacked.shape == (5, 3, 6, 7)
    torch.testing.assert_close(stacked, one_by_one)


def test_float_tiles_within_unit_range_are_not_stretched() -> None:
    card = ModelCard(input_size=(2, 2), mean=(0.0,) * 3, std=(1.0,) * 3)
    tiles = np.full((2, 3, 3, 3), 0.25, np.float32)
    tiles[1] = 0.5
    batch = to_batch(tiles, card, torch.device("cpu"), stacked=True)
    assert batch[0].unique().tolist() == [0.25] and batch[1].unique().tolist() == [0.5]
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        to_batch(tiles[0, 0], card, torch.device("cpu"), stacked=True)
