"""napari's one-list drawing of polygons with holes, and the polygons read back from it.

A napari Shapes polygon is one vertex list. To draw holes and separate parts in one shape,
every ring is joined into that list by bridge edges walked twice (napari drops edges walked
twice). This encoding exists only for how napari draws; the core keeps
:class:`~napari_gradcam.core.regions.polygons.Polygon` objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.measure import points_in_poly

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


def nest_rings(rings: Sequence[np.ndarray]) -> list[Polygon]:
    """Group rings into polygons: a ring inside an even number of others is an exterior.

    A ring inside an odd number of rings is a hole of the innermost exterior around it.
    Containment is tested with each ring's first vertex (rings are assumed not to cross).
    """
    rings = [np.asarray(ring, dtype=float) for ring in rings]
    containers = [
        [j for j, other in enumerate(rings) if j != i and _inside(ring[0], other)]
        for i, ring in enumerate(rings)
    ]
    exteriors = [i for i, around in enumerate(containers) if len(around) % 2 == 0]
    holes: dict[int, list[np.ndarray]] = {i: [] for i in exteriors}
    for i, around in enumerate(containers):
        if len(around) % 2 == 1:
            parent = max((j for j in around if j in holes), key=lambda j: len(containers[j]))
            holes[parent].append(rings[i])
    return [Polygon(rings[i], tuple(holes[i])) for i in exteriors]


def _inside(point: np.ndarray, ring: np.ndarray) -> bool:
    return bool(points_in_poly(point[None], ring)[0])
