"""Statistics of a heatmap inside annotated regions (polygons in level-0 image pixels).

The model's class probability for a region is asked of a callback, given the region's box of
pixels, so that this module needs no model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from napari_gradcam.core.regions.placement import pixels_to_cells
from napari_gradcam.core.regions.polygons import Polygon, bounds, polygons_mask

PixelBox = tuple[int, int, int, int]
"""Rows ``y0:y1`` and columns ``x0:x1`` of level-0 pixels."""

STATISTICS: tuple[str, ...] = (
    "mean",
    "max",
    "p95",
    "energy_share",
    "cells",
    "area_px",
    "area_um2",
    "probability",
)
"""Names of the statistics, in table order."""


@dataclass(frozen=True)
class PlacedMap:
    """A 2-D heatmap and its placement on the image (see ``core.placement``)."""

    cam: np.ndarray
    stride: tuple[float, float]
    origin: tuple[float, float] = (0.0, 0.0)

    def cells_inside(self, polygons: Sequence[Polygon]) -> np.ndarray:
        """Return the mask of cells whose centres lie inside the polygons (given in pixels).

        A region too small to hold a cell centre gets the cell nearest the centre of its
        bounding box, when that lies on the map.
        """
        cells = [
            p.mapped(lambda px: pixels_to_cells(px, self.stride, self.origin)) for p in polygons
        ]
        mask = polygons_mask(cells, self.cam.shape)
        if not mask.any():
            y0, x0, y1, x1 = bounds(cells)
            row, col = round((y0 + y1) / 2), round((x0 + x1) / 2)
            if 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]:
                mask[row, col] = True
        return mask


def pixel_box(polygons: Sequence[Polygon], image_shape: Sequence[int]) -> PixelBox | None:
    """Return the pixels whose centres lie in the polygons' bounding box, clipped to the image.

    Returns None when the box holds no pixel of the image.
    """
    y0, x0, y1, x1 = bounds(polygons)
    low = (max(math.ceil(y0), 0), max(math.ceil(x0), 0))
    high = (
        min(math.floor(y1) + 1, int(image_shape[0])),
        min(math.floor(x1) + 1, int(image_shape[1])),
    )
    if high[0] <= low[0] or high[1] <= low[1]:
        return None
    return low[0], low[1], high[0], high[1]


def expand_box(box: PixelBox, min_size: Sequence[int], image_shape: Sequence[int]) -> PixelBox:
    """Grow ``box`` about its centre to at least ``min_size`` pixels, kept inside the image.

    Examples
    --------
    >>> expand_box((10, 10, 12, 12), (8, 8), (100, 100))
    (7, 7, 15, 15)
    >>> expand_box((0, 0, 2, 2), (8, 8), (100, 100))
    (0, 0, 8, 8)
    """
    edges = []
    for low, high, size, limit in zip(box[:2], box[2:], min_size, image_shape[:2], strict=True):
        size = min(int(size), int(limit))
        grow = max(size - (high - low), 0)
        start = min(max(low - grow // 2, 0), int(limit) - max(high - low, size))
        edges.append((start, start + max(high - low, size)))
    (y0, y1), (x0, x1) = edges
    return y0, x0, y1, x1


def _map_statistics(cam: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, max, 95th percentile and energy share of ``cam`` in ``mask``, and its size."""
    stats = {"cells": float(mask.sum())}
    if not mask.any():
        return stats
    inside = cam[mask]
    stats.update(mean=float(inside.mean()), max=float(inside.max()))
    stats["p95"] = float(np.percentile(inside, 95))
    total = np.clip(cam, 0.0, None).sum()
    if total > 0:
        stats["energy_share"] = float(np.clip(inside, 0.0, None).sum() / total)
    return stats


def region_statistics(
    polygons: Sequence[Polygon],
    heatmap: PlacedMap,
    *,
    mpp: float | None = None,
    image_shape: Sequence[int] | None = None,
    probability: Callable[[PixelBox], float] | None = None,
) -> dict[str, float]:
    """Return the statistics of the heatmap inside one annotation.

    Parameters
    ----------
    polygons : sequence of Polygon
        The annotation, in level-0 image pixels.
    heatmap : PlacedMap
        The map and where it lies.
    mpp : float, optional
        Microns per level-0 pixel; without it ``area_um2`` is NaN.
    image_shape : sequence of int, optional
        ``(rows, columns)`` of the image; needed with ``probability``.
    probability : callable, optional
        Returns the model's probability of the explained class for a box of pixels; without
        it (or when the box misses the image) ``probability`` is NaN.

    Returns
    -------
    dict
        One float per name of :data:`STATISTICS`: ``mean``, ``max`` and ``p95`` of the map in
        the region's cells, ``energy_share`` (its share of the sum of the map's positive
        values), ``cells``, ``area_px``, ``area_um2`` and ``probability``.
    """
    stats = dict.fromkeys(STATISTICS, math.nan)
    stats["area_px"] = sum(p.area for p in polygons)
    if mpp is not None:
        stats["area_um2"] = stats["area_px"] * float(mpp) ** 2
    stats.update(
        _map_statistics(np.asarray(heatmap.cam, dtype=float), heatmap.cells_inside(polygons))
    )
    if probability is not None and image_shape is not None:
        box = pixel_box(polygons, image_shape)
        if box is not None:
            stats["probability"] = float(probability(box))
    return stats
