"""Tile score maps and CLAM-style percentiles."""

from __future__ import annotations

import numpy as np
import torch

from napari_gradcam.core.tiling.grid import TileGrid
from napari_gradcam.slides.embeddings import SlideEmbeddings
from napari_gradcam.slides.mil_outputs import score_map
from napari_gradcam.slides.mil_scores import TileScores


def tiles_at(origins: list[tuple[int, int]], tile: int = 64, step: int = 32) -> SlideEmbeddings:
    grid = TileGrid((0, 0, 512, 512), (tile, tile), (step, step), 8, (8, 8), np.array(origins))
    n = len(origins)
    return SlideEmbeddings(np.zeros((n, 4), np.float32), grid, (2.0, 2.0), 1, np.ones(n), "k")


def test_overlapping_tiles_are_averaged_and_placed_in_level0_pixels() -> None:
    tiles = tiles_at([(0, 0), (0, 32)])
    painted, stride, origin = score_map(tiles, np.array([1.0, 3.0]))
    assert stride == (64.0, 64.0) and origin == (0.0, 0.0)  # 32-pixel cells at 2 px per pixel
    np.testing.assert_allclose(painted, [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])


def test_blur_keeps_a_constant_map_constant_inside_the_tissue() -> None:
    tiles = tiles_at([(0, 0), (0, 64), (64, 0)], step=64)
    painted, _stride, _origin = score_map(tiles, np.full(3, 0.7), blur=1.0)
    np.testing.assert_allclose(painted[painted != 0], 0.7, rtol=1e-5)
    assert painted[1, 1] == 0  # no tile there: stays empty


def test_percentiles_rank_and_keep_the_sign() -> None:
    scores = TileScores(
        0,
        np.zeros(2),
        {"attention": np.array([0.1, 0.5, 0.4]), "grad_x_embedding": np.array([-3.0, 1.0, 2.0])},
        torch.zeros(3, 4),
        0.0,
    )
    shown = scores.percentiles()
    np.testing.assert_allclose(shown["attention"], [1 / 3, 1.0, 2 / 3])
    np.testing.assert_allclose(shown["grad_x_embedding"], [-1.0, 1 / 3, 2 / 3])


def test_a_tile_flush_with_the_edge_is_placed_exactly() -> None:
    # the region is 240 pixels across: tiles at 0 and 96, and one flush with the end at 144
    grid = TileGrid(
        (0, 0, 240, 96), (96, 96), (96, 96), 8, (12, 12), np.array([[0, 0], [96, 0], [144, 0]])
    )
    tiles = SlideEmbeddings(np.zeros((3, 4), np.float32), grid, (2.0, 2.0), 1, np.ones(3), "k")
    painted, stride, origin = score_map(tiles, np.array([1.0, 2.0, 4.0]))
    assert stride == (96.0, 96.0) and origin == (0.0, 0.0)  # 48-pixel cells, 2 px per pixel
    np.testing.assert_allclose(painted[:, 0], [1.0, 1.0, 2.0, 3.0, 4.0])  # 192-240 averaged
    assert painted.shape[0] * 48 == 240  # the map ends where the slide ends


def test_cells_stay_coarse_when_a_flush_tile_would_need_tiny_ones() -> None:
    grid = TileGrid((0, 0, 232, 96), (96, 96), (96, 96), 8, (12, 12), np.array([[0, 0], [136, 0]]))
    tiles = SlideEmbeddings(np.zeros((2, 4), np.float32), grid, (1.0, 1.0), 0, np.ones(2), "k")
    _painted, stride, _origin = score_map(tiles, np.array([1.0, 2.0]))
    assert stride == (96.0, 96.0)  # gcd(96, 136) = 8 would make 12x finer cells: rounded
