"""A thumbnail of a slide with its stitched heatmap blended over it (one normalisation)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_gradcam.core.overlay import overlay
from napari_gradcam.core.tiling.grid import as_numpy
from napari_gradcam.core.tiling.slide_tissue import overview_source

if TYPE_CHECKING:
    from napari_gradcam.slides.lazy_slide import Slide

THUMBNAIL_SIDE = 1024
"""Longest side of the thumbnail, in pixels (about)."""


def thumbnail_overlay(
    slide: Slide, heatmap: Path, side: int = THUMBNAIL_SIDE, *, max_pixels: int | None = None
) -> np.ndarray:
    """Return an RGB uint8 thumbnail of ``slide`` with the heatmap stored at ``heatmap``.

    The heatmap is read at the coarsest of its levels that still has at least one cell per
    thumbnail pixel; it is normalised once, over the whole map. Where the map is zero (tiles
    skipped as background, or no evidence) the slide shows through. A slide whose coarsest
    level is over the pixel cap ``max_pixels`` is refused (see
    :func:`~napari_gradcam.core.tiling.slide_tissue.overview_source`).
    """
    import zarr

    level, step = overview_source(slide.level_shapes, side, name=slide.name, max_pixels=max_pixels)
    image = as_numpy(slide.levels[level][::step, ::step])
    pixel = np.asarray(slide.downsamples[level], dtype=float) * step
    group = zarr.open_group(heatmap, mode="r")
    facts = group.attrs["napari_gradcam"]
    stride = np.asarray(facts["stride"], dtype=float)
    shapes = [np.asarray(s) for s in facts["levels"]]
    full = shapes[0]
    usable = [k for k, s in enumerate(shapes) if np.all(stride * full / s <= pixel.max())]
    chosen = usable[-1] if usable else 0
    cam = np.asarray(group[str(chosen)])
    cell = stride * full / shapes[chosen] / pixel
    offset = np.round(np.asarray(facts["origin"]) / pixel).astype(int)
    placed = np.zeros(image.shape[:2], np.float32)
    covered = _blit(placed, _upsampled(cam, cell), offset)
    blended = overlay(image, covered, (1.0, 1.0))
    plain = overlay(image, covered, (1.0, 1.0), opacity=0.0)
    return np.where(covered[..., None] > 0, blended, plain)


def _upsampled(cam: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The map resized so that one value covers one thumbnail pixel."""
    from skimage.transform import resize

    shape = np.maximum(np.round(np.asarray(cam.shape) * cell), 1).astype(int)
    return resize(cam, tuple(shape), order=1, mode="edge", anti_aliasing=False)


def _blit(canvas: np.ndarray, values: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Copy ``values`` into ``canvas`` at ``offset`` (clipped); return ``canvas``."""
    y, x = offset
    height = max(0, min(values.shape[0], canvas.shape[0] - y))
    width = max(0, min(values.shape[1], canvas.shape[1] - x))
    canvas[y : y + height, x : x + width] = values[:height, :width]
    return canvas
