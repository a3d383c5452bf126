"""Open whole-slide images (.svs, pyramidal or tiled TIFF) lazily with tifffile and zarr.

Pixels are only read when a region is sliced. Microns per pixel come from the file's
metadata (Aperio ``MPP``, OME ``PhysicalSizeX``, or a plausible TIFF resolution); a slide
without them has ``mpp=None`` unless one is given.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

SLIDE_SUFFIXES = (".svs", ".tif", ".tiff")
PLAUSIBLE_MPP = (0.05, 50.0)
"""Microns per pixel a microscope gives; TIFF resolutions outside (e.g. 72 dpi) are ignored."""

_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.]+)")
_OME_SIZE = re.compile(r'PhysicalSizeX="([0-9.eE+-]+)"')


@dataclass(frozen=True, eq=False)
class Slide:
    """A slide's pyramid, lazily readable.

    Attributes
    ----------
    levels : tuple
        ``(H, W, C)`` array-likes (zarr or dask arrays), finest first; slicing reads pixels.
    downsamples : tuple of tuple of float
        Level-0 pixels per pixel of each level ``(dy, dx)``.
    mpp : float or None
        Microns per level-0 pixel.
    mpp_source : str
        Where ``mpp`` came from: ``"metadata"``, ``"given"`` or ``"unknown"``.
    name : str
        A short name (the file name).
    path : Path or None
        The file; a slide with a path is pickled as its path and reopened (for Dask workers).
    """

    levels: tuple[Any, ...]
    downsamples: tuple[tuple[float, float], ...]
    mpp: float | None
    mpp_source: str
    name: str
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of level 0."""
        return tuple(int(n) for n in self.levels[0].shape[:2])

    @property
    def level_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape of every level."""
        return tuple(tuple(int(n) for n in level.shape) for level in self.levels)

    def dask_levels(self) -> list[Any]:
        """The levels as dask arrays chunked like the file (for napari)."""
        import dask.array as da

        return [
            level if isinstance(level, da.Array) else da.from_zarr(level) for level in self.levels
        ]

    def __reduce__(self) -> tuple:
        if self.path is None:
            return super().__reduce__()
        given = self.mpp if self.mpp_source == "given" else None
        return (reopen, (self.path, given, self.path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=8)
def reopen(path: Path, mpp: float | None, _mtime_ns: int) -> Slide:
    """Open a slide once per process (a Dask worker unpickles one per batch)."""
    return open_slide(path, mpp)


def open_slide(path: str | Path, mpp: float | None = None) -> Slide:
    """Open a slide lazily.

    Parameters
    ----------
    path : str or Path
        An .svs file or a (pyramidal, tiled) TIFF of a 2-D RGB or grayscale image.
    mpp : float, optional
        Microns per level-0 pixel; overrides the file's metadata (and is needed when it has
        none and a model's microns per pixel should be matched).

    Raises
    ------
    ValueError
        For a missing, unreadable, truncated or non-2-D file, saying what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no slide file {str(path)!r}")
    if mpp is not None and mpp <= 0:
        raise ValueError(f"microns per pixel must be positive, got {mpp}")
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
    full = np.asarray(levels[0].shape[:2], dtype=float)
    downsamples = tuple(
        tuple(float(d) for d in full / np.asarray(level.shape[:2])) for level in levels
    )
    source = "given" if mpp is not None else ("metadata" if found else "unknown")
    return Slide(levels, downsamples, mpp or found, source, path.name, path)


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
