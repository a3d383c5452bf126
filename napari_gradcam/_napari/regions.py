"""Which pixels to explain: crop boxes on an image layer's last two (level-0) data axes.

napari puts pixel *centres* at integer data coordinates, so pixel ``i`` spans
``[i - 0.5, i + 0.5]``. A world-space rectangle is mapped into the image's data space; the
crop holds the pixels whose centres lie inside it (a rectangle drawn along pixel edges gives
exactly the pixels it encloses), clipped to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Shapes

if TYPE_CHECKING:
    from napari import Viewer

WHOLE_LAYER = "whole layer"
RECTANGLES = "selected rectangles"
FIELD_OF_VIEW = "field of view"
REGION_CHOICES = (WHOLE_LAYER, RECTANGLES, FIELD_OF_VIEW)
_TOLERANCE = 1e-6
"""Pixels whose centres lie this close outside a region still count as inside (round-off)."""


@dataclass(frozen=True)
class Box:
    """Rows ``y0:y1`` and columns ``x0:x1`` of an image plane, in level-0 data pixels."""

    y0: int
    x0: int
    y1: int
    x1: int
    label: str = WHOLE_LAYER

    @property
    def origin(self) -> tuple[int, int]:
        """Top-left pixel ``(y0, x0)``."""
        return self.y0, self.x0

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.y1 - self.y0, self.x1 - self.x0


def whole_layer_box(plane_shape: Sequence[int]) -> Box:
    """Return the box covering a whole ``(height, width)`` plane."""
    return Box(0, 0, int(plane_shape[0]), int(plane_shape[1]), WHOLE_LAYER)


def snap_box(corners: np.ndarray, plane_shape: Sequence[int], label: str) -> Box | None:
    """Return the box of pixels whose centres lie within the points' bounds, clipped.

    ``corners`` are (N, 2) (row, column) data coordinates of a ``(height, width)`` plane; None
    when they enclose no pixel of it.
    """
    low = np.ceil(corners.min(axis=0) - _TOLERANCE).astype(int)
    high = np.floor(corners.max(axis=0) + _TOLERANCE).astype(int) + 1
    limits = np.asarray(plane_shape[:2], dtype=int)
    low = np.clip(low, 0, limits)
    high = np.clip(high, 0, limits)
    if np.any(high <= low):
        return None
    return Box(int(low[0]), int(low[1]), int(high[0]), int(high[1]), label)


def world_to_plane(layer: Image, world_yx: np.ndarray, world_point: Sequence[float]) -> np.ndarray:
    """Map (N, 2) world points of the displayed axes to (row, column) data coordinates.

    ``world_point`` (``viewer.dims.point``) gives the other axes.
    """
    base = np.asarray(world_point, dtype=float)
    if base.size < 2:
        base = np.zeros(2)
    points = []
    for yx in np.asarray(world_yx, dtype=float):
        position = base.copy()
        position[-2:] = yx
        points.append(np.asarray(layer.world_to_data(position))[-2:])
    return np.asarray(points)


def rectangle_boxes(
    layer: Image, shapes: Shapes, plane_shape: Sequence[int], world_point: Sequence[float]
) -> list[Box]:
    """Return one box per selected rectangle of ``shapes`` (all rectangles if none is selected).

    Rectangles that miss the image are skipped.
    """
    rectangles = [i for i, kind in enumerate(shapes.shape_type) if kind == "rectangle"]
    selected = [i for i in rectangles if i in shapes.selected_data] or rectangles
    boxes = []
    for index in selected:
        vertices = np.asarray(shapes.data[index], dtype=float)
        world = np.asarray([shapes.data_to_world(vertex) for vertex in vertices])
        corners = world_to_plane(layer, world[:, -2:], world_point)
        box = snap_box(corners, plane_shape, f"rectangle {index}")
        if box is not None:
            boxes.append(box)
    return boxes


def field_of_view_box(
    layer: Image,
    plane_shape: Sequence[int],
    center: Sequence[float],
    zoom: float,
    canvas_size: Sequence[int],
    world_point: Sequence[float],
) -> Box | None:
    """Return the part of the plane that a 2-D canvas shows, or None when none is visible.

    ``center`` is the camera's (its last two values: the world (y, x) at the canvas centre),
    ``zoom`` canvas pixels per world unit, ``canvas_size`` in screen pixels.
    """
    middle = np.asarray(center, dtype=float)[-2:]
    half = np.asarray(canvas_size, dtype=float)[:2] / (2.0 * zoom)
    world = np.array(
        [middle + half * np.array(sign) for sign in ((-1, -1), (-1, 1), (1, -1), (1, 1))]
    )
    corners = world_to_plane(layer, world, world_point)
    return snap_box(corners, plane_shape, FIELD_OF_VIEW)


def region_boxes(
    viewer: Viewer, layer: Image, plane_shape: Sequence[int], region: str, shapes: Shapes | None
) -> tuple[Box, ...]:
    """Return the boxes of ``region`` (:data:`REGION_CHOICES`), or raise ``ValueError``.

    ``shapes`` holds the rectangles for :data:`RECTANGLES`; the error says what to do.
    """
    point = viewer.dims.point
    if region == WHOLE_LAYER:
        return (whole_layer_box(plane_shape),)
    if region == FIELD_OF_VIEW:
        if viewer.dims.ndisplay != 2:
            raise ValueError("the field of view needs the 2-D view; switch napari to 2-D")
        camera = viewer.scene.camera
        box = field_of_view_box(
            layer, plane_shape, camera.center, camera.zoom, viewer.canvas.size, point
        )
        if box is None:
            raise ValueError(f"{layer.name!r} is not in view; pan or zoom to it")
        return (box,)
    if shapes is None:
        raise ValueError("add a Shapes layer and draw rectangles on the image")
    boxes = rectangle_boxes(layer, shapes, plane_shape, point)
    if not boxes:
        raise ValueError(
            f"no rectangle of {shapes.name!r} lies on {layer.name!r}; draw one with the "
            "rectangle tool"
        )
    return tuple(boxes)
