"""Where an H&E image shows tissue, and how much of each map cell it covers.

Tissue is where the colour is saturated: glass is grey-white, stains are not. One function,
:func:`tissue_mask`, serves every caller: a fixed saturation threshold judges a single tile
or crop (so a tile of glass is judged like a slide), Otsu's threshold of the whole image
finds a slide's tissue (``slide_tissue``) and labelled the demo model's tiles
(``training.stain_labels``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage import filters, measure, util

TISSUE_SATURATION = 0.15
"""HSV saturation above which a pixel is tissue. Glass on the bundled slide stays below 0.05;
the demo labels used Otsu's threshold of that whole slide (about 0.25)."""

MIN_TISSUE_FRACTION = 0.05
"""A crop with less tissue than this share of its pixels is a blank (glass-only) tile."""


def _saturation_table() -> np.ndarray:
    """(256, 256) HSV saturation of a pixel by its (max, min) uint8 channel values."""
    values = util.img_as_float(np.arange(256, dtype=np.uint8))  # as rgb2hsv scales uint8
    delta = values[:, None] - values[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        table = delta / values[:, None]
    table[delta == 0.0] = 0.0  # grey (and black) pixels have no saturation
    return table


_SATURATION_U8 = _saturation_table()


def hsv_saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation ``(max - min) / max`` of (H, W, 3) pixels, 0 where ``max == min``.

    Equal, value for value, to ``skimage.color.rgb2hsv(rgb)[..., 1]`` without its hue and
    value channels: uint8 pixels look their saturation up by (max, min) (the table holds
    ``rgb2hsv``'s own float64 arithmetic), other dtypes take the same float path.
    """
    if rgb.dtype == np.uint8:
        red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        high = np.maximum(np.maximum(red, green), blue)  # faster than a reduce over 3 channels
        low = np.minimum(np.minimum(red, green), blue)
        return _SATURATION_U8[high, low]
    unit = util.img_as_float(rgb)
    brightest = unit.max(axis=-1)
    delta = np.ptp(unit, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        saturation = delta / brightest
    saturation[delta == 0.0] = 0.0
    return saturation


def is_rgb(image: np.ndarray) -> bool:
    """Whether ``image`` is (H, W, 3) or (H, W, 4): colour, so tissue can be told from glass."""
    return image.ndim == 3 and image.shape[-1] in (3, 4)


def remove_specks(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Drop a 2-D boolean mask's 8-connected components of fewer than ``min_size`` pixels."""
    labels = measure.label(mask, connectivity=2)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def tissue_mask(
    image: np.ndarray,
    threshold: float | None = TISSUE_SATURATION,
    *,
    min_saturation: float = 0.0,
    min_size: int = 16,
) -> np.ndarray:
    """Return where a brightfield RGB image shows stained tissue rather than glass: (H, W) bool.

    Tissue specks are 8-connected. Tiles, crops, slide thumbnails and the demo model's
    training labels differ only in the settings they pass.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W, 3) or (H, W, 4) pixels: integers over their dtype's range or floats in [0, 1]
        (alpha is ignored; saturation does not depend on the brightness scale).
    threshold : float or None
        HSV saturation (0-1) above which a pixel is tissue; ``None``: Otsu's threshold of
        this image's saturation (give a whole slide: Otsu needs glass and tissue to choose
        well).
    min_saturation : float
        Floor of Otsu's threshold, so that an image of only glass gives no tissue.
    min_size : int
        Tissue specks smaller than this many pixels are dropped (dust, debris).

    Raises
    ------
    ValueError
        For an image that is not RGB(A): saturation says nothing about tissue there.
    """
    image = np.asarray(image)
    if not is_rgb(image):
        raise ValueError(
            f"a tissue mask needs an RGB brightfield image, got shape {image.shape}; "
            "gray or fluorescence images have no stain saturation to threshold"
        )
    saturation = hsv_saturation(image[..., :3])
    if threshold is None:
        threshold = max(float(filters.threshold_otsu(saturation)), min_saturation)
    return remove_specks(saturation > threshold, min_size)


def tissue_fraction(image: np.ndarray, threshold: float = TISSUE_SATURATION) -> float | None:
    """Share of pixels that are tissue, or ``None`` for an image that is not RGB(A).

    Examples
    --------
    >>> glass = np.full((32, 32, 3), 235, dtype=np.uint8)
    >>> tissue_fraction(glass)
    0.0
    """
    if not is_rgb(np.asarray(image)):
        return None
    return float(tissue_mask(image, threshold).mean())


def cell_fractions(
    mask: np.ndarray, map_shape: Sequence[int], stride: Sequence[float]
) -> np.ndarray:
    """Share of each map cell's pixels that are set in ``mask``: float32 (h, w) in [0, 1].

    Map cell ``i`` covers input pixels ``[floor(i f), floor((i + 1) f))`` along each axis
    (cells past the image edge are clipped; empty cells get 0).

    Parameters
    ----------
    mask : numpy.ndarray
        (H, W) boolean mask at the explained input's resolution.
    map_shape : sequence of int
        (h, w) of the map.
    stride : sequence of float
        (fy, fx) input pixels per map cell.

    Examples
    --------
    >>> mask = np.zeros((4, 4), bool); mask[:2, :2] = True
    >>> cell_fractions(mask, (2, 2), (2, 2)).tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    """
    sums = np.asarray(mask, dtype=np.float64)
    counts = np.ones_like(sums)
    for axis, (cells, step) in enumerate(zip(map_shape, stride, strict=True)):
        size = sums.shape[axis]
        edges = np.minimum(np.floor(np.arange(cells + 1) * step).astype(int), size)
        sums = _segment_sums(sums, edges, axis)
        counts = _segment_sums(counts, edges, axis)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0).astype(np.float32)


def _segment_sums(values: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    """Sums of ``values`` over ``[edges[i], edges[i + 1])`` along ``axis`` (0 when empty)."""
    zero = np.zeros_like(values.take([0], axis=axis))
    cumulative = np.concatenate([zero, np.cumsum(values, axis=axis)], axis=axis)
    return cumulative.take(edges[1:], axis=axis) - cumulative.take(edges[:-1], axis=axis)
