"""GeoJSON geometries to and from polygons, lines and points in napari's level-0 pixels.

QuPath's pixel coordinates put the image's top-left *corner* at (0, 0) and list points as
(x, y); napari puts the top-left pixel's *centre* at (0, 0) and lists (row, column). So a
point at napari row ``r``, column ``c`` is QuPath ``(c + 0.5, r + 0.5)``. Only this module
swaps axes and shifts by half a pixel.

Polygons are checked with shapely: an invalid one (crossing edges, a hole outside its
shell) is repaired and the repair reported. Written polygons have closed rings, the
exterior counter-clockwise and holes clockwise (RFC 7946); a one-part MultiPolygon is
written as a Polygon.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_gradcam.core.regions.polygons import (
    Polygon,
    invalidity,
    open_ring,
    oriented,
    repaired,
)

PIXEL_CENTRE = 0.5
"""QuPath coordinate of the first pixel's centre."""
POLYGONAL = ("Polygon", "MultiPolygon")
LINEAR = ("LineString", "MultiLineString")
PUNCTUAL = ("Point", "MultiPoint")


@dataclass(frozen=True)
class Geometry:
    """What a feature's geometry holds, in level-0 napari (row, column) pixels.

    Attributes
    ----------
    polygons : tuple of Polygon
        Areas (with holes).
    lines : tuple of numpy.ndarray
        Open polylines, (N, 2) each, N >= 2.
    points : numpy.ndarray
        (N, 2) points.
    """

    polygons: tuple[Polygon, ...] = ()
    lines: tuple[np.ndarray, ...] = ()
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def __add__(self, other: Geometry) -> Geometry:
        return Geometry(
            self.polygons + other.polygons,
            self.lines + other.lines,
            np.concatenate([self.points, other.points]),
        )

    @property
    def vertices(self) -> np.ndarray:
        """Every vertex, (N, 2)."""
        rings = [ring for polygon in self.polygons for ring in polygon.rings]
        return np.concatenate([np.zeros((0, 2)), *rings, *self.lines, self.points])


def _positions(coordinates: Any, notes: list[str]) -> np.ndarray:
    """(row, column) points of a list of [x, y] (or [x, y, z]) positions."""
    try:
        points = np.asarray(coordinates, dtype=float)
    except (TypeError, ValueError):
        points = np.zeros((0, 0))
    if points.ndim != 2 or points.shape[1] < 2 or not np.all(np.isfinite(points)):
        raise ValueError("its coordinates are not a list of finite [x, y] positions")
    if points.shape[1] > 2 and "z coordinates left out" not in notes:
        notes.append("z coordinates left out (napari shows the plane, see 'plane')")
    return points[:, 1::-1] - PIXEL_CENTRE


def _ring(coordinates: Any, notes: list[str]) -> np.ndarray:
    ring = open_ring(_positions(coordinates, notes))
    if len(ring) < 3:
        raise ValueError(f"a ring has {len(ring)} distinct points; a polygon needs at least 3")
    return ring


def _polygon(rings: Any, notes: list[str]) -> Polygon:
    if not isinstance(rings, list) or not rings:
        raise ValueError("a polygon has no rings")
    return Polygon(_ring(rings[0], notes), tuple(_ring(hole, notes) for hole in rings[1:]))


def _line(coordinates: Any, notes: list[str]) -> np.ndarray:
    line = _positions(coordinates, notes)
    if len(line) < 2:
        raise ValueError("a line needs at least 2 points")
    return line


def read_geometry(raw: Any, notes: list[str]) -> Geometry:
    """The geometry of a GeoJSON geometry object; what could not be kept goes to ``notes``.

    Raises
    ------
    ValueError
        When it holds nothing that can be read.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ValueError("it has no geometry")
    kind, coordinates = raw["type"], raw.get("coordinates")
    if kind == "GeometryCollection":
        parts = raw.get("geometries")
        if not isinstance(parts, list) or not parts:
            raise ValueError("its GeometryCollection is empty")
        return sum(
            (read_geometry(part, notes) for part in parts[1:]), read_geometry(parts[0], notes)
        )
    if kind not in (*POLYGONAL, *LINEAR, *PUNCTUAL):
        raise ValueError(f"its geometry type {kind!r} is not GeoJSON")
    multi = kind.startswith("Multi")
    if not isinstance(coordinates, list) or not coordinates:
        raise ValueError(f"its {kind} has no coordinates")
    if kind in PUNCTUAL:
        return Geometry(points=_positions(coordinates if multi else [coordinates], notes))
    parts = coordinates if multi else [coordinates]
    if kind in LINEAR:
        return Geometry(lines=tuple(_line(part, notes) for part in parts))
    polygons = tuple(_polygon(part, notes) for part in parts)
    reason = invalidity(polygons)
    if reason is not None:
        polygons = repaired(polygons)
        notes.append(f"invalid polygon ({reason}) repaired")
        if not polygons:
            raise ValueError(f"its polygon is invalid ({reason}) and encloses no area")
    return Geometry(polygons=polygons)


def _xy(points: np.ndarray) -> list[list[float]]:
    return (np.asarray(points, dtype=float)[:, ::-1] + PIXEL_CENTRE).tolist()


def _closed(ring: np.ndarray) -> list[list[float]]:
    xy = _xy(ring)
    return [*xy, xy[0]]


def _polygonal(polygons: Sequence[Polygon]) -> dict[str, Any]:
    # in (x, y) the rows are flipped against (row, column): orient clockwise in (row, column)
    parts = [[_closed(r) for r in oriented(p, exterior_clockwise=True).rings] for p in polygons]
    if len(parts) == 1:
        return {"type": "Polygon", "coordinates": parts[0]}
    return {"type": "MultiPolygon", "coordinates": parts}


def write_geometry(geometry: Geometry) -> dict[str, Any]:
    """The GeoJSON geometry object (a GeometryCollection when kinds are mixed).

    Raises
    ------
    ValueError
        When the geometry is empty.
    """
    parts = []
    if geometry.polygons:
        parts.append(_polygonal(geometry.polygons))
    if len(geometry.lines) == 1:
        parts.append({"type": "LineString", "coordinates": _xy(geometry.lines[0])})
    elif geometry.lines:
        parts.append({"type": "MultiLineString", "coordinates": [_xy(x) for x in geometry.lines]})
    if len(geometry.points) == 1:
        parts.append({"type": "Point", "coordinates": _xy(geometry.points)[0]})
    elif len(geometry.points):
        parts.append({"type": "MultiPoint", "coordinates": _xy(geometry.points)})
    if not parts:
        raise ValueError("an object needs a polygon, a line or a point")
    return parts[0] if len(parts) == 1 else {"type": "GeometryCollection", "geometries": parts}
