"""The 2-D plane of an image layer that is explained: current slice, pyramid levels, crops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image

from napari_gradcam._napari.regions import Box
from napari_gradcam.core.tiling.grid import LevelView
from napari_gradcam.core.tiling.sampling import sampling_for


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


def plane_sampling(plane: Plane, model_mpp: float | None) -> tuple[int, float]:
    """Return ``(level, resample)`` that shows ``plane`` at the model's microns per pixel.

    The one rule of every path (one box, tiles, region probabilities, trust checks):
    :func:`~napari_gradcam.core.tiling.sampling.sampling_for`. Level 0 as it is when either
    resolution is unknown.
    """
    return sampling_for(plane.downsamples, plane.mpp, model_mpp)


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
        Level-0 pixels per crop pixel (the level's downsample times the resampling).
    """

    pixels: np.ndarray
    origin: tuple[float, float]
    downsample: tuple[float, float]


def read_crop(plane: Plane, box: Box, level: int, resample: float = 1.0) -> Crop:
    """Read ``box`` (level-0 pixels) from pyramid ``level``, widened to whole sampled pixels.

    ``resample`` level pixels make one crop pixel (area-averaged; see
    :func:`plane_sampling`).
    """
    view = LevelView(plane.levels[level], plane.downsamples[level], resample)
    y0, x0, y1, x1 = view.region_from_level0((box.y0, box.x0, box.y1, box.x1))
    py, px = view.pixel_size
    return Crop(view.read(y0, x0, y1, x1), (y0 * py, x0 * px), (py, px))
