"""Shapes-layer geometry in level-0 image pixels, whatever the layers' transforms.

A shape's vertex goes from the Shapes layer's data coordinates to world coordinates (its
scale, translate, rotate, shear, affine) and from there to the image layer's level-0 data
coordinates (the inverse of the image's transform). Both steps are affine on the displayed
plane, so they are kept as 3 x 3 homogeneous matrices measured with ``data_to_world``.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Layer, Shapes

from napari_gradcam._napari.annotations.rings import decode_rings, encode_rings
from napari_gradcam.core.regions.polygons import Polygon, nest_rings

ELLIPSE_VERTICES = 64
POLYGON_TYPES = ("polygon", "rectangle", "ellipse")


def plane_matrix(layer: Layer) -> np.ndarray:
    """Return the 3 x 3 matrix from a layer's last two data axes to the last two world axes."""
    base = np.zeros(layer.ndim)
    origin = np.asarray(layer.data_to_world(base), dtype=float)[-2:]
    matrix = np.eye(3)
    matrix[:2, 2] = origin
    for axis in (0, 1):
        unit = base.copy()
        unit[-2 + axis] = 1.0
        matrix[:2, axis] = np.asarray(layer.data_to_world(unit), dtype=float)[-2:] - origin
    return matrix


def data_to_pixels(shapes: Layer, image: Layer | None) -> np.ndarray:
    """Return the matrix from ``shapes`` data to ``image`` level-0 pixels.

    Without an image, the shapes layer's data coordinates are taken as the pixels.
    """
    if image is None:
        return np.eye(3)
    return np.linalg.inv(plane_matrix(image)) @ plane_matrix(shapes)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 homogeneous matrix to (N, 2) points."""
    points = np.asarray(points, dtype=float)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _ellipse_ring(corners: np.ndarray) -> np.ndarray:
    """Sample the ellipse inscribed in a (possibly rotated) box given by 4 corners."""
    centre = corners.mean(axis=0)
    half_u = (corners[1] - corners[0]) / 2.0
    half_v = (corners[3] - corners[0]) / 2.0
    angles = np.linspace(0.0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)
    return centre + np.outer(np.cos(angles), half_u) + np.outer(np.sin(angles), half_v)


def shape_polygons(shapes: Shapes, index: int, matrix: np.ndarray) -> list[Polygon]:
    """Return shape ``index`` as polygons in pixels (empty for lines and paths).

    ``matrix`` comes from :func:`data_to_pixels`.
    """
    kind = shapes.shape_type[index]
    if kind not in POLYGON_TYPES:
        return []
    vertices = np.asarray(shapes.data[index], dtype=float)[:, -2:]
    if kind == "ellipse":
        vertices = _ellipse_ring(vertices)
    rings = [apply(matrix, ring) for ring in decode_rings(vertices)]
    return nest_rings(rings) if rings else []


def polygons_to_data(polygons: list[Polygon], matrix: np.ndarray) -> np.ndarray:
    """Return the napari vertex list (holes included) of polygons in level-0 pixels.

    ``matrix`` comes from :func:`data_to_pixels`; its inverse is applied.
    """
    return apply(np.linalg.inv(matrix), encode_rings(polygons))


def shape_centre_world(shapes: Shapes, index: int) -> np.ndarray:
    """Return the world (y, x) centre of a shape's bounding box."""
    vertices = np.asarray(shapes.data[index], dtype=float)[:, -2:]
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
    return apply(plane_matrix(shapes), centre[None])[0]
