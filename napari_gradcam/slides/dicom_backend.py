"""The wsidicom backend: DICOM whole-slide images (a folder of instances, or one of its files).

Each pyramid level of the selected pyramid becomes a dask array whose chunks wsidicom reads
from the level's tiles; microns per pixel come from the DICOM ``PixelSpacing``.
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


def dicom_folder(path: Path) -> Path:
    """The folder holding a DICOM slide: ``path`` itself, or the folder of a ``.dcm`` file."""
    return path if path.is_dir() else path.parent


def open_dicom(path: Path) -> Pyramid:
    """Open a DICOM WSI series with wsidicom as a lazy pyramid.

    Raises
    ------
    ValueError
        When the folder holds no readable DICOM whole-slide image.
    """
    wsi = _open_wsidicom(dicom_folder(path))
    base = wsi.levels[0]
    probe = np.asarray(wsi.read_region((0, 0), base.level, (1, 1), as_array=True))
    channels = probe.shape[-1] if probe.ndim == 3 else 1
    if channels != 3:
        raise ValueError(f"{path} holds {channels}-channel images; only RGB DICOM slides open")
    levels, shapes = [], []
    for level in wsi.levels:
        shape = (level.size.height, level.size.width, channels)
        reader = _DicomLevelReader(wsi, level.level, channels)
        token = f"wsidicom:{path.resolve()}:{path.stat().st_mtime_ns}:{level.level}"
        levels.append(RegionArray(reader, shape, chunk_side(level.tile_size.width), token))
        shapes.append(shape)
    return Pyramid(tuple(levels), shape_downsamples(shapes), _dicom_mpp(wsi))


def _open_wsidicom(folder: Path) -> Any:
    try:
        from wsidicom import WsiDicom
    except ImportError as err:  # pragma: no cover - a base dependency
        raise ValueError(f"cannot open {folder}: wsidicom is not installed") from err
    try:
        return WsiDicom.open(folder)
    except Exception as err:  # wsidicom raises many kinds; all mean "not a readable WSI"
        raise ValueError(
            f"wsidicom cannot read a DICOM whole-slide image in {folder}: {err}"
        ) from err


def _dicom_mpp(wsi: Any) -> float | None:
    """Microns per level-0 pixel from the DICOM ``PixelSpacing``, or None when it is missing."""
    from wsidicom.errors import WsiDicomNoResolutionError

    try:
        spacing = wsi.mpp
    except WsiDicomNoResolutionError:
        return None
    return mean_mpp([spacing.width, spacing.height])


class _DicomLevelReader:
    """Reads a box of one pyramid level (in that level's pixels)."""

    def __init__(self, wsi: Any, level: int, channels: int):
        self.wsi = wsi
        self.level = level
        self.channels = channels

    def __call__(self, y: int, x: int, height: int, width: int) -> np.ndarray:
        region = self.wsi.read_region((x, y), self.level, (width, height), as_array=True)
        return np.asarray(region, dtype=np.uint8).reshape(height, width, self.channels)
