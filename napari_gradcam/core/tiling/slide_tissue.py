"""Where a slide holds tissue: found once on a low-resolution level, then shared per tile.

The mask is ``tissue.tissue_mask`` with Otsu's threshold above a floor (a slide of only glass
gives no tissue); tiles are judged by the share of tissue under them, from an integral image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_gradcam.core.pixel_limit import PYRAMID_ADVICE, check_pixels
from napari_gradcam.core.tiling.grid import as_numpy
from napari_gradcam.core.tiling.tissue import tissue_mask

MAX_SIDE = 2048
"""Longest side, in pixels, of the image the tissue is found on."""

MIN_SATURATION = 0.05
"""Saturation below which a pixel is never tissue, whatever Otsu's threshold says."""

MIN_OBJECT_PX = 64
"""Tissue pieces smaller than this many mask pixels are dropped."""


@dataclass(frozen=True)
class TissueMap:
    """A slide's tissue mask and its placement on level 0.

    Attributes
    ----------
    mask : numpy.ndarray
        (h, w) bool, True on tissue.
    pixel_size : tuple of float
        Level-0 pixels per mask pixel ``(py, px)``.
    """

    mask: np.ndarray
    pixel_size: tuple[float, float]

    def fractions(self, boxes: np.ndarray) -> np.ndarray:
        """Share of tissue under each level-0 box ``(y0, x0, y1, x1)``, (N,) float32."""
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        integral = np.pad(self.mask.cumsum(0).cumsum(1), ((1, 0), (1, 0))).astype(np.int64)
        h, w = self.mask.shape
        scale = np.tile(self.pixel_size, 2)
        y0, x0, y1, x1 = np.round(boxes / scale).astype(np.int64).T
        y0, x0 = np.clip(y0, 0, h - 1), np.clip(x0, 0, w - 1)
        y1, x1 = np.clip(np.maximum(y1, y0 + 1), 1, h), np.clip(np.maximum(x1, x0 + 1), 1, w)
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        return (inside / ((y1 - y0) * (x1 - x0))).astype(np.float32)


def mask_source(shapes: Sequence[Sequence[int]], max_side: int = MAX_SIDE) -> tuple[int, int]:
    """Return ``(level, step)`` of the image the tissue is found on.

    That is the finest level no longer than ``max_side``, else the coarsest level read every
    ``step`` pixels.
    """
    for level, shape in enumerate(shapes):
        if max(shape[:2]) <= max_side:
            return level, 1
    coarsest = len(shapes) - 1
    return coarsest, math.ceil(max(shapes[coarsest][:2]) / max_side)


def overview_source(
    shapes: Sequence[Sequence[int]],
    max_side: int = MAX_SIDE,
    *,
    name: str = "the slide",
    max_pixels: int | None = None,
) -> tuple[int, int]:
    """Return :func:`mask_source`'s ``(level, step)`` once its cost is known to be bounded.

    A level read every ``step`` pixels still decodes the whole level (every chunk holds a
    sampled pixel), so a slide without a level of at most ``max_side`` pixels is refused when
    its coarsest level is over the pixel cap, before any pixel is read.

    Raises
    ------
    TooManyPixels
        Naming the level, its size and the cap, and how to give the slide a pyramid.
    """
    level, step = mask_source(shapes, max_side)
    if step > 1:
        what = f"{name}'s coarsest level ({level}), read whole for an overview,"
        check_pixels(shapes[level][:2], what, PYRAMID_ADVICE, limit=max_pixels)
    return level, step


def slide_tissue(
    levels: Sequence[Any],
    downsamples: Sequence[Sequence[float]],
    *,
    max_side: int = MAX_SIDE,
    min_saturation: float = MIN_SATURATION,
    name: str = "the slide",
    max_pixels: int | None = None,
) -> TissueMap:
    """Find the tissue of a slide once, on a low-resolution level.

    Parameters
    ----------
    levels : sequence of array-like
        Pyramid levels (H, W, C), finest first.
    downsamples : sequence of tuple of float
        Level-0 pixels per pixel of each level.
    max_side : int
        Longest side of the image the mask is computed on.
    min_saturation : float
        Floor of the saturation threshold.
    name : str
        The slide's name, for the message when it is too large to find tissue on.
    max_pixels : int, optional
        The pixel cap (:mod:`~napari_gradcam.core.pixel_limit`) on the level read.

    Returns
    -------
    TissueMap
        The mask and where it lies on level 0.

    Raises
    ------
    TooManyPixels
        When the slide has no level small enough to read whole (see :func:`overview_source`).
    """
    shapes = [np.shape(data) for data in levels]
    level, step = overview_source(shapes, max_side, name=name, max_pixels=max_pixels)
    pixels = as_numpy(levels[level][::step, ::step])
    mask = tissue_mask(pixels, None, min_saturation=min_saturation, min_size=MIN_OBJECT_PX)
    dy, dx = downsamples[level]
    return TissueMap(mask, (float(dy) * step, float(dx) * step))
