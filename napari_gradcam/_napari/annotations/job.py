"""The annotations' statistics, computed in a worker thread and handed over in batches.

The main thread copies what the job needs (the shapes' vertices and types, the placed map,
the pixel transform); the job turns each shape into polygons and measures the map inside,
``BATCH`` shapes at a time, so the dock's table fills as results come. The class
probability is looked up on the main thread (its cache lives there), from the boxes sent.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
from napari.layers import Shapes

from napari_gradcam._napari.annotations.shape_coords import shape_polygons
from napari_gradcam.core.progress import Progress
from napari_gradcam.core.regions.region_stats import (
    STATISTICS,
    PixelBox,
    PlacedMap,
    pixel_box,
    region_statistics,
)

BATCH = 50


@dataclass(frozen=True)
class ShapesCopy:
    """The vertices and types of a Shapes layer at one moment (what ``shape_polygons`` reads)."""

    data: tuple[np.ndarray, ...]
    shape_type: tuple[str, ...]

    @classmethod
    def of(cls, shapes: Shapes) -> ShapesCopy:
        """Copy ``shapes`` (on the main thread)."""
        return cls(tuple(np.array(d, copy=True) for d in shapes.data), tuple(shapes.shape_type))


@dataclass(frozen=True)
class StatisticsBatch:
    """Statistics of shapes ``start`` to ``start + len(rows)``, and each one's pixel box."""

    start: int
    rows: list[dict[str, float]]
    boxes: list[PixelBox | None]


def statistics_batches(
    shapes: ShapesCopy,
    placed: PlacedMap,
    matrix: np.ndarray,
    mpp: float | None,
    image_shape: Sequence[int] | None,
) -> Generator[Progress | StatisticsBatch, None, int]:
    """Measure ``placed`` inside every shape, ``BATCH`` at a time; return the shape count."""
    count = len(shapes.data)
    for start in range(0, count, BATCH):
        rows, boxes = [], []
        for index in range(start, min(count, start + BATCH)):
            polygons = shape_polygons(shapes, index, matrix)
            if not polygons:
                rows.append(dict.fromkeys(STATISTICS, math.nan))
                boxes.append(None)
                continue
            rows.append(region_statistics(polygons, placed, mpp=mpp))
            boxes.append(pixel_box(polygons, image_shape) if image_shape is not None else None)
        done = start + len(rows)
        yield Progress(done, count, f"statistics of {done} of {count} annotations")
        yield StatisticsBatch(start, rows, boxes)
    return count
