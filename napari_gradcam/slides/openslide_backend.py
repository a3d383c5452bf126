"""The OpenSlide backend: Hamamatsu, 3DHISTECH, Leica, Ventana, Sakura, Philips, DICOM, TIFF.

OpenSlide (through ``openslide-python`` and the ``openslide-bin`` wheel, no system library)
reads every level of the vendor formats. Each level becomes a dask array whose chunks are
read with ``read_region``; pixels OpenSlide leaves transparent (outside the scanned areas)
are filled with the slide's background colour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.slides.pyramid import (
    Pyramid,
    RegionArray,
    chunk_side,
    mean_mpp,
    shape_downsamples,
)

WHITE = "FFFFFF"


def open_openslide(path: Path) -> Pyramid:
    """Open a slide with OpenSlide as a lazy RGB pyramid.

    Raises
    ------
    ValueError
        When OpenSlide is missing or does not recognise or cannot read the file.
    """
    handle = _open_openslide(path)
    properties = handle.properties
    background = _background(properties.get("openslide.background-color") or WHITE)
    levels, shapes = [], []
    for level, (width, height) in enumerate(handle.level_dimensions):
        tile = properties.get(f"openslide.level[{level}].tile-width")
        reader = _OpenSlideLevelReader(
            handle, level, float(handle.level_downsamples[level]), background
        )
        token = f"openslide:{path.resolve()}:{path.stat().st_mtime_ns}:{level}"
        levels.append(RegionArray(reader, (height, width, 3), chunk_side(int(tile or 0)), token))
        shapes.append((height, width))
    return Pyramid(tuple(levels), shape_downsamples(shapes), _openslide_mpp(properties))


def _open_openslide(path: Path) -> Any:
    try:
        import openslide
    except ImportError as err:  # pragma: no cover - a base dependency
        raise ValueError(
            f"cannot open {path}: OpenSlide is not installed "
            "(pip install openslide-python openslide-bin)"
        ) from err
    if path.is_dir():  # a DICOM folder: OpenSlide finds the series from any of its files
        path = next(iter(sorted(path.glob("*.dcm"))), path)
    try:
        return openslide.OpenSlide(path)
    except openslide.OpenSlideUnsupportedFormatError as err:
        raise ValueError(f"OpenSlide does not recognise {path} as a slide") from err
    except openslide.OpenSlideError as err:
        raise ValueError(
            f"OpenSlide cannot read {path}: it is damaged or incomplete ({err})"
        ) from err


def _openslide_mpp(properties: Any) -> float | None:
    """Microns per level-0 pixel (the mean of x and y), or None when the slide does not say."""
    return mean_mpp([properties.get(f"openslide.mpp-{axis}") for axis in ("x", "y")])


def _background(colour: str) -> np.ndarray:
    """An ``RRGGBB`` hex colour as a float RGB triple."""
    return np.array([int(colour[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)


class _OpenSlideLevelReader:
    """Reads a box of one level (in that level's pixels) as RGB uint8."""

    def __init__(self, handle: Any, level: int, downsample: float, background: np.ndarray):
        self.handle = handle
        self.level = level
        self.downsample = downsample
        self.background = background

    def __call__(self, y: int, x: int, height: int, width: int) -> np.ndarray:
        # OpenSlide places a region by its level-0 corner
        corner = (round(x * self.downsample), round(y * self.downsample))
        rgba = np.asarray(self.handle.read_region(corner, self.level, (width, height)))
        return composite(rgba, self.background)


def composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """RGB pixels of non-premultiplied RGBA laid over ``background`` (opaque pixels unchanged)."""
    alpha = rgba[..., 3:]
    if np.all(alpha == 255):
        return np.ascontiguousarray(rgba[..., :3])
    weight = alpha.astype(np.float32) / 255.0
    mixed = rgba[..., :3] * weight + background * (1.0 - weight)
    return np.round(mixed).astype(np.uint8)
