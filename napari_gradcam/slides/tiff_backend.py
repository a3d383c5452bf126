"""The tifffile backend: .svs, OME-TIFF (with SubIFD levels) and tiled or pyramidal TIFF.

The fast path for the TIFF family: levels are zarr arrays over the file's own tiles, read by
tifffile and imagecodecs. Microns per pixel come from the Aperio ``MPP``, the OME
``PhysicalSizeX`` or a plausible TIFF resolution.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_gradcam.slides.pyramid import Pyramid, shape_downsamples

PLAUSIBLE_MPP = (0.05, 50.0)
"""Microns per pixel a microscope gives; TIFF resolutions outside (e.g. 72 dpi) are ignored."""

_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.]+)")
_OME_SIZE = re.compile(r'PhysicalSizeX="([0-9.eE+-]+)"')


def open_tiff(path: Path) -> Pyramid:
    """Open the first series of a TIFF or SVS file as a lazy pyramid.

    Raises
    ------
    ValueError
        For an unreadable, truncated or non-2-D file, saying what is wrong.
    """
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            check_complete(path, series)
            found = metadata_mpp(tiff)
    except (tifffile.TiffFileError, OSError, IndexError, KeyError) as err:
        raise ValueError(
            f"cannot read {path} as a slide: it is not a TIFF or SVS file, or it is damaged or "
            f"truncated ({err})"
        ) from err
    check_axes(path, series.axes, series.shape)
    levels = open_levels(path)
    return Pyramid(levels, shape_downsamples([level.shape for level in levels]), found)


def open_levels(path: Path) -> tuple[Any, ...]:
    """Return the levels of the first series as read-only zarr arrays."""
    import zarr

    store = tifffile.imread(path, aszarr=True, series=0)
    opened = zarr.open(store, mode="r")
    if isinstance(opened, zarr.Array):
        return (opened,)
    return tuple(opened[key] for key in sorted(opened.array_keys(), key=int))


def check_complete(path: Path, series: tifffile.TiffPageSeries) -> None:
    """Raise ``ValueError`` when the file ends before the pixel data of a level."""
    size = path.stat().st_size
    for index, level in enumerate(series.levels):
        for page in level.pages:
            if page is None:
                raise ValueError(f"{path} is truncated: level {index} has missing pages")
            ends = np.asarray(page.dataoffsets, np.int64) + np.asarray(page.databytecounts)
            if ends.size and int(ends.max()) > size:
                raise ValueError(
                    f"{path} is truncated: level {index} needs {int(ends.max())} bytes but the "
                    f"file has {size}; copy or download it again"
                )


def check_axes(path: Path, axes: str, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless the image is 2-D grayscale (YX) or colour (YXS)."""
    if axes not in ("YX", "YXS"):
        raise ValueError(
            f"{path} holds a {axes} image of shape {shape}; only 2-D grayscale or RGB slides "
            "(YX or YXS) can be explained"
        )


def metadata_mpp(tiff: tifffile.TiffFile) -> float | None:
    """Microns per level-0 pixel from Aperio, OME or TIFF resolution metadata, else None."""
    page = tiff.pages[0]
    description = page.description or ""
    for pattern in (_APERIO_MPP, _OME_SIZE):
        match = pattern.search(description if pattern is _APERIO_MPP else tiff.ome_metadata or "")
        if match and float(match.group(1)) > 0:
            return float(match.group(1))
    if page.resolutionunit == tifffile.RESUNIT.NONE:
        return None
    per_micron = page.get_resolution(tifffile.RESUNIT.MICROMETER)[1]
    mpp = 1.0 / per_micron if per_micron > 0 else 0.0
    return mpp if PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1] else None
