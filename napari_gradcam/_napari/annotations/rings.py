"""napari's one-list drawing of polygons with holes, and the polygons read back from it.

A napari Shapes polygon is one vertex list. To draw holes and separate parts in one shape,
every ring is joined into that list by bridge edges walked twice (napari drops edges walked
twice). This encoding exists only for how napari draws; the core keeps
:class:`~napari_gradcam.core.regions.polygons.Polygon` objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_gradcam.core.regions.polygons import Polygon, open_ring


def encode_rings(polygons: Sequence[Polygon]) -> np.ndarray:
    """Join every ring of the polygons into one vertex list, as napari draws holes.

    Each ring is closed explicitly and followed by a return to the first vertex; the
    bridge edges so made are walked twice, and napari drops edges walked twice, so holes
    stay open and separate parts stay separate. :func:`decode_rings` undoes it. A single
    ring is returned as it is.
    """
    rings = [ring for polygon in polygons for ring in polygon.rings]
    if len(rings) == 1:
        return np.array(rings[0], dtype=float)
    anchor = rings[0][:1]
    parts = [rings[0], anchor]
    for ring in rings[1:]:
        parts += [ring, ring[:1], anchor]
    return np.concatenate(parts)


def decode_rings(vertices: np.ndarray) -> list[np.ndarray]:
    """Split a vertex list made by :func:`encode_rings` back into open rings.

    A list that does not follow the encoding (e.g. a polygon drawn by hand) is one ring.
    """
    points = np.asarray(vertices, dtype=float)
    anchor = points[0]
    rings, start, index = [], 0, 1
    while index < len(points):
        if np.array_equal(points[index], points[start]):
            rings.append(points[start:index])
            start = index + 1
            if start < len(points) and np.array_equal(points[start], anchor):
                start += 1
            index = start
        index += 1
    if start < len(points):
        rings.append(points[start:])
    opened = [open_ring(ring) for ring in rings]
    return [ring for ring in opened if len(ring) >= 3]
