"""An output region over a tiled image: which tiles it reaches, and each tile's crop of it.

The region is one boolean mask covering the whole image: level-0 pixels, or a coarser grid of
the same extent (each mask pixel covers ``H / h`` x ``W / w`` level-0 pixels, e.g. a mask drawn
on a slide's thumbnail). A tile read from any pyramid level, at any offset, gets the mask
pixel under the centre of each of its own pixels, so its crop lines up with its pixels.
numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _mask_scale(mask: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Mask pixels per level-0 pixel ``(sy, sx)``."""
    return np.array(mask.shape[:2], dtype=float) / np.array(image_shape[:2], dtype=float)


def tile_region_masks(
    mask: np.ndarray,
    image_shape: Sequence[int],
    origins: np.ndarray,
    tile: Sequence[int],
    pixel_size: Sequence[float],
) -> np.ndarray:
    """Each tile's crop of the region, ``(B, th, tw)`` bool, one value per tile pixel.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(h, w)`` bool mask covering the image.
    image_shape : sequence of int
        ``(H, W)`` of the image in level-0 pixels.
    origins : numpy.ndarray
        ``(B, 2)`` top-left corners of the tiles in sampled pixels.
    tile : sequence of int
        ``(th, tw)`` of a tile.
    pixel_size : sequence of float
        Level-0 pixels per sampled pixel ``(py, px)``.
    """
    scale = _mask_scale(mask, image_shape)
    steps = [np.arange(int(n)) + 0.5 for n in tile]
    crops = np.empty((len(origins), int(tile[0]), int(tile[1])), dtype=bool)
    for index, (y, x) in enumerate(np.asarray(origins, dtype=float)):
        rows = _indices((y + steps[0]) * pixel_size[0] * scale[0], mask.shape[0])
        cols = _indices((x + steps[1]) * pixel_size[1] * scale[1], mask.shape[1])
        crops[index] = mask[rows[:, None], cols[None, :]]
    return crops


def _indices(positions: np.ndarray, size: int) -> np.ndarray:
    """The mask pixels holding ``positions`` (edge coordinates), clipped to the mask."""
    return np.clip(np.floor(positions).astype(np.int64), 0, size - 1)


def tiles_in_region(
    mask: np.ndarray,
    image_shape: Sequence[int],
    origins: np.ndarray,
    tile: Sequence[int],
    pixel_size: Sequence[float],
) -> np.ndarray:
    """Which tiles' crops (:func:`tile_region_masks`) hold a pixel of the region, ``(N,)`` bool.

    Only tiles whose box reaches the region's bounding box are cropped to look.
    """
    scale = _mask_scale(mask, image_shape)
    extent = np.asarray(tile, dtype=float) * np.asarray(pixel_size) * scale
    low = np.asarray(origins, dtype=float) * np.asarray(pixel_size) * scale
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    inside = np.zeros(len(low), dtype=bool)
    if rows.size == 0:
        return inside
    near = (
        (low[:, 0] < rows[-1] + 1)
        & (low[:, 0] + extent[0] > rows[0])
        & (low[:, 1] < cols[-1] + 1)
        & (low[:, 1] + extent[1] > cols[0])
    )
    for index in np.flatnonzero(near):
        crop = tile_region_masks(mask, image_shape, origins[index : index + 1], tile, pixel_size)
        inside[index] = bool(crop.any())
    return inside
