"""Where a map of stride ``f`` computed on a crop lies in napari's world coordinates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def heatmap_transform(
    stride: Sequence[float],
    origin: Sequence[float] = (0.0, 0.0),
    scale: Sequence[float] = (1.0, 1.0),
    translate: Sequence[float] = (0.0, 0.0),
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the (scale, translate) that line a low-resolution map up with its image layer.

    napari places pixel *centres* at integer data coordinates. Map cell ``i`` covers image
    pixels ``origin + [i f, (i + 1) f)``, whose centre is ``origin + i f + (f - 1) / 2``; so
    the heatmap layer's scale is ``s * f`` and its translate ``t + s * (origin + (f - 1) / 2)``.

    Parameters
    ----------
    stride : sequence of float
        Image pixels per map cell, per axis (``f``). For a crop from a pyramid level with
        downsample ``d``, pass ``f * d``.
    origin : sequence of float
        Top-left pixel of the explained crop, in the image layer's (level-0) data pixels.
    scale, translate : sequence of float
        The image layer's scale and translate on the same axes.

    Examples
    --------
    >>> heatmap_transform((8, 8), (16, 0), scale=(0.5, 0.5), translate=(10, 20))
    ((4.0, 4.0), (19.75, 21.75))
    """
    f = np.asarray(stride, dtype=float)
    s = np.asarray(scale, dtype=float)
    t = np.asarray(translate, dtype=float)
    o = np.asarray(origin, dtype=float)
    if not f.shape == s.shape == t.shape == o.shape:
        raise ValueError("stride, origin, scale and translate need the same number of axes")
    if np.any(f <= 0):
        raise ValueError(f"stride must be positive, got {tuple(f)}")
    new_scale = s * f
    new_translate = t + s * (o + (f - 1.0) / 2.0)
    return tuple(new_scale.tolist()), tuple(new_translate.tolist())


def cells_to_pixels(
    cells: np.ndarray, stride: Sequence[float], origin: Sequence[float] = (0.0, 0.0)
) -> np.ndarray:
    """Map continuous map-cell coordinates to level-0 image pixels (float64 (..., 2), row, column).

    Both use napari's convention (cell and pixel centres at integers). From the alignment
    formula, world = ``t + s f c + s (o + (f - 1) / 2)`` for a cell and ``t + s p`` for a
    pixel, so ``p = o + (c + 0.5) f - 0.5``.

    Parameters
    ----------
    cells : numpy.ndarray
        (..., 2) points (row, column) in the map's data coordinates.
    stride : sequence of float
        Image pixels per map cell, per axis.
    origin : sequence of float
        Top-left pixel of the explained crop.

    Examples
    --------
    >>> cells_to_pixels(np.array([[0.0, 0.0], [-0.5, -0.5]]), (8, 8), (16, 0)).tolist()
    [[19.5, 3.5], [15.5, -0.5]]
    """
    f = np.asarray(stride, dtype=float)
    return np.asarray(origin, dtype=float) + (np.asarray(cells, dtype=float) + 0.5) * f - 0.5


def pixels_to_cells(
    pixels: np.ndarray, stride: Sequence[float], origin: Sequence[float] = (0.0, 0.0)
) -> np.ndarray:
    """Inverse of :func:`cells_to_pixels`: ``c = (p + 0.5 - o) / f - 0.5``."""
    f = np.asarray(stride, dtype=float)
    return (np.asarray(pixels, dtype=float) + 0.5 - np.asarray(origin, dtype=float)) / f - 0.5
