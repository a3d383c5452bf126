"""The region a target is about, as a user names it: a box, an annotation file or a mask image.

An ``x,y,w,h`` box (image pixels: column, row, width, height) or a GeoJSON / QuPath annotation
file gives polygons in level-0 image pixels; a mask or labels image gives a boolean mask. Either
is laid on a pixel grid that covers the whole image: the image's own pixels, or a coarser grid
of the same extent for a whole slide (each grid pixel covers ``H / h`` x ``W / w`` level-0
pixels), so a region never takes more memory than the pixel cap allows. numpy only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_gradcam.core.regions.geojson import read_geojson
from napari_gradcam.core.regions.polygons import Polygon, polygons_mask

BOX_PATTERN = re.compile(r"^\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*$")
"""``x,y,w,h``: a box's left column, top row, width and height in image pixels."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".svs", ".ndpi")
"""Files a user may give as a region by mistake: images, not regions."""


def is_box(text: str) -> bool:
    """Whether ``text`` reads as an ``x,y,w,h`` box rather than a file name."""
    return BOX_PATTERN.match(text) is not None


def box_polygon(text: str) -> Polygon:
    """The ``x,y,w,h`` box as a polygon around pixels ``x .. x+w-1`` and ``y .. y+h-1``.

    Pixel centres lie at integers (napari's convention), so the outline runs half a pixel
    outside them.

    Examples
    --------
    >>> box_polygon("2,1,3,2").exterior.tolist()
    [[0.5, 1.5], [0.5, 4.5], [2.5, 4.5], [2.5, 1.5]]
    """
    found = BOX_PATTERN.match(text)
    if found is None:
        raise ValueError(
            f"{text!r} is not a box: give x,y,w,h in image pixels (left column, top row, "
            "width, height), e.g. 120,80,224,224"
        )
    x, y, w, h = (float(v) for v in found.groups())
    if w <= 0 or h <= 0:
        raise ValueError(f"the box {text!r} is empty: its width and height must be above 0")
    top, left, bottom, right = y - 0.5, x - 0.5, y + h - 0.5, x + w - 0.5
    ring = np.array([[top, left], [top, right], [bottom, right], [bottom, left]], dtype=float)
    return Polygon(ring)


def read_region(spec: str, image_shape: Sequence[int] | None = None) -> tuple[Polygon, ...]:
    """The polygons of an ``x,y,w,h`` box or of every area in a GeoJSON / QuPath file.

    The file is read by :func:`~napari_gradcam.core.regions.geojson.read_geojson`, with its
    size limits. A file with no area (only points or lines, or features that could not be
    read) is refused, naming what went wrong.
    """
    if is_box(spec):
        return (box_polygon(spec),)
    path = Path(spec)
    if not path.exists():
        raise ValueError(
            f"the region {spec!r} is neither an x,y,w,h box nor an existing GeoJSON file; give "
            "a box in image pixels (e.g. 120,80,224,224) or a .geojson exported from QuPath"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(
            f"the region {spec!r} is an image, not a region: give a box x,y,w,h or a GeoJSON "
            "file; to compare with another image, name it with --like-image and give its box "
            "(e.g. --like-image ref.png --like-region 0,0,96,96)"
        )
    found = read_geojson(path, image_shape)
    polygons = tuple(p for annotation in found.annotations for p in annotation.polygons)
    if not polygons:
        why = "; ".join(found.skipped[:3]) or "it holds no polygon (only points or lines)"
        raise ValueError(f"{path.name} gives no area to use as a region: {why}")
    return polygons


def read_region_mask(
    path: str | Path, *, label: int | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """A boolean mask from a mask or labels image (PNG, TIFF, .npy).

    Without ``label`` every non-zero pixel is in the region; with it, the pixels equal to
    ``label`` (one object of a labels image). A colour image is refused: give one channel.
    """
    from napari_gradcam.core.image_files import read_image

    pixels = read_image(path, max_pixels=max_pixels)
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        if not all(np.array_equal(pixels[..., 0], pixels[..., c]) for c in (1, 2)):
            raise ValueError(
                f"{Path(path).name} is a colour image; a region mask needs one channel (0 "
                "outside the region, non-zero inside, or the labels of a labels image)"
            )
        pixels = pixels[..., 0]
    if pixels.ndim != 2:
        raise ValueError(
            f"{Path(path).name} has shape {pixels.shape}; a region mask is a 2-D image of the "
            "input's size"
        )
    mask = pixels != 0 if label is None else pixels == label
    if not mask.any():
        where = "no non-zero pixel" if label is None else f"no pixel labelled {label}"
        raise ValueError(f"{Path(path).name} holds {where}: the region is empty")
    return mask


def mask_grid(image_shape: Sequence[int], max_pixels: int) -> tuple[int, int]:
    """The finest grid over the image, its own or coarser by a whole factor, of ``max_pixels``.

    At most ``max_pixels`` pixels: a slide's region never takes more memory than the cap.

    Examples
    --------
    >>> mask_grid((100, 60), 10_000), mask_grid((100, 60), 1_000)
    ((100, 60), (25, 15))
    """
    height, width = (int(n) for n in image_shape[:2])
    factor = max(1, math.ceil(math.sqrt(height * width / max_pixels)))
    while math.ceil(height / factor) * math.ceil(width / factor) > max_pixels:
        factor += 1
    return math.ceil(height / factor), math.ceil(width / factor)


def polygons_on_grid(
    polygons: Sequence[Polygon], image_shape: Sequence[int], grid: Sequence[int]
) -> np.ndarray:
    """Rasterise polygons in image pixels onto a grid of shape ``grid`` covering the image.

    A grid pixel is in the region when its centre is (on the image's own grid: the pixels
    whose centres the polygons enclose); overlapping polygons add up (their union).
    """
    scale = np.array([grid[0] / image_shape[0], grid[1] / image_shape[1]], dtype=float)
    mask = np.zeros(tuple(int(n) for n in grid[:2]), dtype=bool)
    for polygon in polygons:
        mask |= polygons_mask([polygon.mapped(lambda p: (p + 0.5) * scale - 0.5)], mask.shape)
    return mask


def stretched_mask(mask: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A mask covering the same extent as ``mask`` on a grid of ``shape``, nearest pixel.

    Each output pixel takes the mask pixel under its centre; the same size returns the mask.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(shape[:2]):
        return mask
    rows = ((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(np.int64)
    cols = ((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(np.int64)
    return mask[rows[:, None], cols[None, :]]


def check_same_extent(mask_shape: Sequence[int], image_shape: Sequence[int], name: str) -> None:
    """Refuse a mask whose shape is not the image's, nor a scaled-down copy of it.

    One pixel of slack either way: a level's size times its downsample may miss level 0's by
    a pixel, and a downsampled copy's sides are rounded.
    """
    (h, w), (height, width) = mask_shape[:2], image_shape[:2]
    smaller = h <= height + 1 and w <= width + 1
    if smaller and abs(h / height - w / width) <= 1 / min(h, w):
        return
    raise ValueError(
        f"the region mask {name} is {h} x {w} pixels but the image is {height} x {width}; give "
        "a mask of the image's size (or a downsampled copy covering the whole image)"
    )
