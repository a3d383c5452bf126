"""The 2-D plane of an image layer that is explained: current slice, pyramid levels, crops."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image

from napari_gradcam._napari.regions import Box


@dataclass(frozen=True)
class Plane:
    """The current 2-D plane of an image layer, at every pyramid level.

    Attributes
    ----------
    levels : tuple
        Array-likes ``(H, W)`` or ``(H, W, C)``, finest first; indexing them stays lazy.
    downsamples : tuple of tuple of float
        ``(dy, dx)`` level-0 pixels per pixel of each level.
    slice_index : tuple of int
        Data index of the plane on the leading (stack) axes; empty for a 2-D image.
    mpp : float or None
        Microns per level-0 pixel, when known.
    """

    levels: tuple[Any, ...]
    downsamples: tuple[tuple[float, float], ...]
    slice_index: tuple[int, ...] = ()
    mpp: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of level 0."""
        return tuple(int(n) for n in self.levels[0].shape[:2])


def layer_mpp(layer: Image) -> float | None:
    """Return microns per data pixel from metadata ``mpp`` or micrometre units, else None."""
    mpp = layer.metadata.get("mpp")
    if mpp is not None:
        return float(mpp)
    if str(layer.units[-1]) == "micrometer":
        return float(layer.scale[-1])
    return None


def current_plane(layer: Image, world_point: Sequence[float]) -> Plane:
    """Slice the plane that the viewer shows at ``world_point`` (``viewer.dims.point``)."""
    level_data = list(layer.data) if layer.multiscale else [layer.data]
    level_shapes = np.asarray(layer.level_shapes, dtype=float)
    n_leading = level_shapes.shape[1] - 2
    position = np.asarray(layer.world_to_data(world_point), dtype=float)[:n_leading]
    index0 = np.clip(np.round(position), 0, level_shapes[0, :n_leading] - 1).astype(int)
    levels, downsamples = [], []
    for data, shape in zip(level_data, level_shapes, strict=True):
        factor = shape[:n_leading] / level_shapes[0, :n_leading]
        index = np.minimum((index0 * factor).astype(int), shape[:n_leading].astype(int) - 1)
        levels.append(data[tuple(index)] if n_leading else data)
        downsamples.append(tuple(float(d) for d in level_shapes[0, -2:] / shape[-2:]))
    return Plane(tuple(levels), tuple(downsamples), tuple(int(i) for i in index0), layer_mpp(layer))


def choose_level(plane: Plane, model_mpp: float | None) -> int:
    """Return the pyramid level whose resolution is closest to the model's training mpp.

    Level 0 is used when either resolution is unknown or there is a single level.
    """
    if plane.mpp is None or model_mpp is None or len(plane.levels) == 1:
        return 0
    mismatch = [abs(math.log(plane.mpp * d[1] / model_mpp)) for d in plane.downsamples]
    return int(np.argmin(mismatch))


@dataclass(frozen=True)
class Crop:
    """Pixels of one box read at one pyramid level.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``(h, w)`` or ``(h, w, C)`` at the level's resolution.
    origin : tuple of float
        Level-0 pixel of the crop's top-left corner.
    downsample : tuple of float
        Level-0 pixels per crop pixel.
    """

    pixels: np.ndarray
    origin: tuple[float, float]
    downsample: tuple[float, float]


def read_crop(plane: Plane, box: Box, level: int) -> Crop:
    """Read ``box`` (level-0 pixels) from pyramid ``level``, widened to whole level pixels."""
    dy, dx = plane.downsamples[level]
    data = plane.levels[level]
    y0, x0 = math.floor(box.y0 / dy), math.floor(box.x0 / dx)
    y1 = min(math.ceil(box.y1 / dy), data.shape[0])
    x1 = min(math.ceil(box.x1 / dx), data.shape[1])
    pixels = np.asarray(data[y0:y1, x0:x1])
    return Crop(pixels, (y0 * dy, x0 * dx), (dy, dx))
