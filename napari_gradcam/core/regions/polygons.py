"""Polygons with holes on a pixel grid: areas and rasterisation.

Rings are open ``(N, 2)`` float arrays of (row, column) points: the first vertex is not
repeated at the end. Coordinates follow napari's convention: pixel (or cell) centres at
integers, so pixel ``i`` spans ``[i - 0.5, i + 0.5]``. Areas, containment, validity and
repair are shapely's (its x and y hold row and column here, which changes no area).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
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

    def to_shapely(self) -> shapely.Polygon:
        """The shapely polygon (closing each ring)."""
        return shapely.Polygon(self.exterior, list(self.holes))

    def mapped(self, transform: Callable[[np.ndarray], np.ndarray]) -> Polygon:
        """Return the polygon with ``transform`` applied to every ring's (N, 2) points."""
        return Polygon(
            np.asarray(transform(self.exterior), dtype=float),
            tuple(np.asarray(transform(hole), dtype=float) for hole in self.holes),
        )


def ring_area(ring: np.ndarray) -> float:
    """Return the (unsigned) area enclosed by a ring (0 for fewer than 3 points)."""
    points = np.asarray(ring, dtype=float).reshape(-1, 2)
    if len(points) < 3:
        return 0.0
    return float(shapely.Polygon(points).area)


def open_ring(ring: np.ndarray) -> np.ndarray:
    """Return the ring without a repeated closing vertex and without repeated neighbours."""
    points = np.asarray(ring, dtype=float).reshape(-1, 2)
    if len(points) > 1:
        keep = np.ones(len(points), dtype=bool)
        keep[1:] = np.any(points[1:] != points[:-1], axis=1)
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


def nest_rings(rings: Sequence[np.ndarray]) -> list[Polygon]:
    """Group rings into polygons: a ring inside an even number of others is an exterior.

    A ring inside an odd number of rings is a hole of the innermost exterior around it.
    Containment is tested with each ring's first vertex (rings are assumed not to cross).
    """
    rings = [np.asarray(ring, dtype=float) for ring in rings]
    shells = shapely.polygons([shapely.linearrings(ring) for ring in rings])
    firsts = shapely.points([ring[0] for ring in rings])
    inside = shapely.contains_properly(shells[None, :], firsts[:, None])
    np.fill_diagonal(inside, False)
    containers = [np.flatnonzero(row).tolist() for row in inside]
    exteriors = [i for i, around in enumerate(containers) if len(around) % 2 == 0]
    holes: dict[int, list[np.ndarray]] = {i: [] for i in exteriors}
    for i, around in enumerate(containers):
        if len(around) % 2 == 1:
            parent = max((j for j in around if j in holes), key=lambda j: len(containers[j]))
            holes[parent].append(rings[i])
    return [Polygon(rings[i], tuple(holes[i])) for i in exteriors]


def to_shapely(polygons: Sequence[Polygon]) -> shapely.MultiPolygon:
    """The polygons as one shapely MultiPolygon (parts kept as given, even if they overlap)."""
    return shapely.MultiPolygon([polygon.to_shapely() for polygon in polygons])


def from_shapely(geometry: shapely.Geometry) -> tuple[Polygon, ...]:
    """The polygonal parts of a shapely geometry as open-ring polygons (lines, points dropped)."""
    parts = shapely.get_parts(geometry)
    polygons = []
    for part in parts:
        if isinstance(part, shapely.GeometryCollection | shapely.MultiPolygon):
            polygons += from_shapely(part)
        elif isinstance(part, shapely.Polygon) and not part.is_empty:
            rings = [part.exterior, *part.interiors]
            opened = [open_ring(np.asarray(ring.coords)[:, :2]) for ring in rings]
            polygons.append(Polygon(opened[0], tuple(opened[1:])))
    return tuple(polygons)


def invalidity(polygons: Sequence[Polygon]) -> str | None:
    """Why the polygons are not a valid (multi)polygon, or None when each part is valid."""
    for polygon in polygons:
        shape = polygon.to_shapely()
        if not shape.is_valid:
            return shapely.is_valid_reason(shape)
    return None


def repaired(polygons: Sequence[Polygon]) -> tuple[Polygon, ...]:
    """The polygons made valid by shapely (crossing rings split, stray holes fixed)."""
    valid = [shapely.make_valid(polygon.to_shapely()) for polygon in polygons]
    return tuple(part for shape in valid for part in from_shapely(shape))


def oriented(polygon: Polygon, exterior_clockwise: bool = False) -> Polygon:
    """The polygon with its exterior counter-clockwise (or clockwise) and holes the other way.

    Orientation is that of the coordinates as (x, y) numbers (shapely's ``is_ccw``); GeoJSON
    (RFC 7946) wants the exterior counter-clockwise. A reversed ring keeps its first vertex.
    """
    rings = polygon.rings
    ccw = shapely.is_ccw(shapely.linearrings(np.concatenate(rings), indices=_ring_indices(rings)))
    wanted = np.array([not exterior_clockwise] + [exterior_clockwise] * len(polygon.holes))
    turned = [
        ring if is_ccw == want else np.concatenate([ring[:1], ring[:0:-1]])
        for ring, is_ccw, want in zip(rings, ccw, wanted, strict=True)
    ]
    return Polygon(turned[0], tuple(turned[1:]))


def _ring_indices(rings: Sequence[np.ndarray]) -> np.ndarray:
    return np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
