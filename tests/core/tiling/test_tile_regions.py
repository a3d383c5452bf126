"""An output region over a tiled image: the tiles it reaches and each tile's aligned crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import OutputRegion
from napari_gradcam.core.tiling.grid import LevelView
from napari_gradcam.core.tiling.tile_regions import tile_region_masks, tiles_in_region
from napari_gradcam.core.tiling.tiled import plan_tiles, read_tiles

TILE = 16


def region_mask(shape: tuple[int, int]) -> np.ndarray:
    """An irregular region: a disc and a thin bar."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    disc = (rows - 0.4 * shape[0]) ** 2 + (cols - 0.6 * shape[1]) ** 2 < (0.2 * shape[0]) ** 2
    bar = (rows > 0.8 * shape[0]) & (rows < 0.8 * shape[0] + 3) & (cols < 0.5 * shape[1])
    return disc | bar


def reference_crop(mask, image_shape, origin, tile, pixel_size) -> np.ndarray:
    """Slow: for each tile pixel, its centre in level-0 pixels, then the mask pixel there."""
    crop = np.zeros(tile, bool)
    for r in range(tile[0]):
        for c in range(tile[1]):
            y = (origin[0] + r + 0.5) * pixel_size[0]  # level-0 edge coordinates
            x = (origin[1] + c + 0.5) * pixel_size[1]
            my = min(int(y * mask.shape[0] / image_shape[0]), mask.shape[0] - 1)
            mx = min(int(x * mask.shape[1] / image_shape[1]), mask.shape[1] - 1)
            crop[r, c] = mask[my, mx]
    return crop


@pytest.mark.parametrize(
    ("mask_shape", "pixel_size"), [((96, 128), (1.0, 1.0)), ((24, 32), (2.0, 2.0))]
)
def test_each_tile_takes_the_mask_under_its_pixel_centres(mask_shape, pixel_size):
    image_shape = (96, 128)
    mask = region_mask(mask_shape)
    origins = np.array([[0, 0], [5, 7], [30, 40], [36, 48]])
    tile = (12, 16)
    crops = tile_region_masks(mask, image_shape, origins, tile, pixel_size)
    for crop, origin in zip(crops, origins, strict=True):
        np.testing.assert_array_equal(
            crop, reference_crop(mask, image_shape, origin, tile, pixel_size)
        )


def test_a_tile_is_in_the_region_when_its_crop_holds_a_region_pixel():
    """Reference: every tile's crop, made the slow way, tested for any region pixel."""
    image_shape, tile, pixel_size = (96, 128), (8, 8), (2.0, 2.0)
    mask = np.zeros(image_shape, bool)
    mask[20, 30] = True  # between the level-0 pixels 2x-coarser tiles sample: no tile has it
    mask[41, 5] = True
    origins = np.stack(np.meshgrid(np.arange(0, 41, 3), np.arange(0, 57, 5), indexing="ij"), -1)
    origins = origins.reshape(-1, 2)
    found = tiles_in_region(mask, image_shape, origins, tile, pixel_size)
    for origin, inside in zip(origins, found, strict=True):
        assert inside == reference_crop(mask, image_shape, origin, tile, pixel_size).any()
    covering = (origins[:, 0] * 2 <= 20) & (origins[:, 0] * 2 + 16 > 20)
    covering &= (origins[:, 1] * 2 <= 30) & (origins[:, 1] * 2 + 16 > 30)
    assert covering.any() and found.any() and not found[covering].any()
    empty = np.zeros((4, 4), bool)
    assert not tiles_in_region(empty, image_shape, origins, tile, pixel_size).any()


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(4),
        nn.Conv2d(4, 3, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    card = ModelCard(name="tiny", classes=("a", "b", "c"), input_size=(TILE, TILE))
    return LoadedModel(model.eval(), card, "tiny", "factory")


def test_tiles_of_a_coarser_level_and_an_offset_region_get_crops_aligned_with_their_pixels(
    loaded,
):
    """Level 1 (2x) of an image whose pixels are the region: each crop equals its tile."""
    level0 = region_mask((160, 192))
    image = np.repeat(level0[..., None].astype(np.uint8) * 255, 3, axis=-1)
    # a 2x level whose pixel (i, j) holds level-0 pixel (2i + 1, 2j + 1): the centre it covers
    view = LevelView(image[1::2, 1::2], (2.0, 2.0))
    target = OutputRegion(1, level0, "disc")
    settings = ExplainSettings(target=target)
    plan = plan_tiles(loaded, view, 1, (20, 36, 160, 180), settings=settings, overlap=0.5)
    assert plan.grid.region[:2] == (10, 18)  # the region starts away from the image's corner
    assert plan.in_region is not None
    assert 0 < len(plan.explained) < plan.grid.n_tiles
    assert plan.outside_region == plan.grid.n_tiles - len(plan.explained)
    tiles = read_tiles(view, plan.grid.origins[plan.explained], plan.grid.tile)
    batch = plan.batch_settings(plan.explained)
    assert batch.target.mask.shape == (len(plan.explained), TILE, TILE)
    assert batch.target.target_class == 1 and batch.target.label == "disc"
    np.testing.assert_array_equal(batch.target.mask, tiles[..., 0] > 0)
    assert all(crop.any() for crop in batch.target.mask)
    skipped = np.setdiff1d(np.arange(plan.grid.n_tiles), plan.explained)
    assert not read_tiles(view, plan.grid.origins[skipped], plan.grid.tile).any()


def test_other_targets_go_to_every_tile_unchanged(loaded):
    view = LevelView(np.zeros((64, 64, 3), np.uint8))
    settings = ExplainSettings(target="b")
    plan = plan_tiles(loaded, view, 0, (0, 0, 64, 64), settings=settings)
    assert plan.in_region is None and plan.outside_region == 0
    assert plan.batch_settings(plan.explained[:2]) == plan.settings


def test_a_region_mask_of_another_extent_is_refused(loaded):
    view = LevelView(np.zeros((64, 64, 3), np.uint8))
    settings = ExplainSettings(target=OutputRegion(0, np.ones((30, 64), bool)))
    with pytest.raises(ValueError, match="30 x 64 pixels but the image is 64 x 64"):
        plan_tiles(loaded, view, 0, (0, 0, 64, 64), settings=settings)
