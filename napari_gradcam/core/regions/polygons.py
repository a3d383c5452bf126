"""Polygons with holes on a pixel grid: areas and rasterisation.

Rings are open ``(N, 2)`` float arrays of (row, column) points: the first vertex is not
repeated at the end. Coordinates follow napari's convention: pixel (or cell) centres at
integers, so pixel ``i`` spans ``[i - 0.5, i + 0.5]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.measure import points_in_poly


@dataclass(frozen=True)
class Polygon:
    """One outer ring and the holes cut out of it.

    Attributes
    ----------
    exterior : numpy.ndarray
        (N, 2) open ring, N >= 3.
    holes : tuple of numpy.ndarray
        Open rings inside ``exterior``.
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    @property
    def rings(self) -> tuple[np.ndarray, ...]:
        """The exterior followed by the holes."""
        return (self.exterior, *self.holes)

    @property
    def area(self) -> float:
        """Area of the exterior minus the holes, in squared units of the coordinates."""
        return ring_area(self.exterior) - sum(ring_area(hole) for hole in self.holes)

    def mapped(self, transform: Callable[[np.ndarray], np.ndarray]) -> Polygon:
        """Return the polygon with ``transform`` applied to every ring's (N, 2) points."""
        return Polygon(
            np.asarray(transform(self.exterior), dtype=float),
            tuple(np.asarray(transform(hole), dtype=float) for hole in self.holes),
        )


def ring_area(ring: np.ndarray) -> float:
    """Return the (unsigned) shoelace area of a ring."""
    points = np.asarray(ring, dtype=float)
    y, x = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def open_ring(ring: np.ndarray) -> np.ndarray:
    """Return the ring without a repeated closing vertex and without repeated neighbours."""
    points = np.asarray(ring, dtype=float).reshape(-1, 2)
    if len(points) > 1:
        keep = np.any(points != np.roll(points, 1, axis=0), axis=1)
        keep[0] = True
        points = points[keep]
    if len(points) > 1 and np.array_equal(points[0], points[-1]):
        points = points[:-1]
    return points


def bounds(polygons: Sequence[Polygon]) -> tuple[float, float, float, float]:
    """Return ``(row_min, col_min, row_max, col_max)`` of the polygons' exteriors."""
    points = np.concatenate([p.exterior for p in polygons])
    low, high = points.min(axis=0), points.max(axis=0)
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def polygons_mask(polygons: Sequence[Polygon], shape: Sequence[int]) -> np.ndarray:
    """Return the grid points (cell centres) of ``shape`` inside the polygons (even-odd rule).

    Parameters
    ----------
    polygons : sequence of Polygon
        In the grid's coordinates (centres at integers).
    shape : sequence of int
        ``(rows, columns)`` of the grid.

    Returns
    -------
    numpy.ndarray
        bool mask of ``shape``.
    """
    mask = np.zeros(tuple(int(n) for n in shape[:2]), dtype=bool)
    for polygon in polygons:
        for ring in polygon.rings:
            _toggle_inside(mask, ring)
    return mask


def _toggle_inside(mask: np.ndarray, ring: np.ndarray) -> None:
    """Flip ``mask`` at the grid points inside ``ring`` (only its bounding box is tested)."""
    low = np.maximum(np.ceil(ring.min(axis=0)).astype(int), 0)
    high = np.minimum(np.floor(ring.max(axis=0)).astype(int) + 1, mask.shape)
    if np.any(high <= low):
        return
    rows, cols = np.mgrid[low[0] : high[0], low[1] : high[1]]
    points = np.column_stack([rows.ravel(), cols.ravel()])
    inside = points_in_poly(points, ring).reshape(rows.shape)
    mask[low[0] : high[0], low[1] : high[1]] ^= inside
