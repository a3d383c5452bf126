"""Render a heatmap over its image as an RGB picture (for files; napari draws its own)."""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from napari_gradcam.core.explain.explanation import normalize_cam
from napari_gradcam.core.explain.preprocess import match_channels, to_unit_range


def upsample_to_image(
    cam: np.ndarray, stride: tuple[float, float], shape: tuple[int, int]
) -> np.ndarray:
    """Bilinearly upsample a map of ``stride`` to an image of ``shape``, cells on their blocks.

    The map covers ``cam.shape * stride`` pixels from the top-left; the rest (at most one
    stride at the far edges) repeats the edge values.
    """
    covered = (round(cam.shape[0] * stride[0]), round(cam.shape[1] * stride[1]))
    upsampled = resize(cam, covered, order=1, mode="edge", anti_aliasing=False)
    pad = [(0, max(shape[0] - covered[0], 0)), (0, max(shape[1] - covered[1], 0))]
    return np.pad(upsampled, pad, mode="edge")[: shape[0], : shape[1]]


def overlay(
    image: np.ndarray, cam: np.ndarray, stride: tuple[float, float], *, opacity: float = 0.5
) -> np.ndarray:
    """Blend the turbo-coloured, min-max normalised map over the image.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, C) pixels of any common dtype.
    cam : numpy.ndarray
        Raw map (h, w).
    stride : tuple of float
        Image pixels per map cell.
    opacity : float
        Weight of the heatmap colour.

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8.
    """
    from matplotlib import colormaps

    base = match_channels(to_unit_range(np.asarray(image)), 3)
    heat = upsample_to_image(normalize_cam(cam), stride, base.shape[:2])
    # napari's turbo: matplotlib's 256 colours, interpolated linearly between them
    stops = np.linspace(0.0, 1.0, 256)
    table = colormaps["turbo"](stops)[:, :3]
    colours = np.stack([np.interp(heat, stops, table[:, k]) for k in range(3)], axis=-1)
    blended = (1 - opacity) * base + opacity * colours
    return (np.clip(blended, 0, 1) * 255).round().astype(np.uint8)
