"""Bundled sample images: a real H&E slide region and scikit-image's IHC tile.

Only numpy, tifffile and scikit-image are used here (no napari, no torch), so the
samples can be read from scripts, tests and the napari sample-data menu alike.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import tifffile

__all__ = ["HE_MPP", "HE_SLIDE_PATH", "ihc_tile", "read_he_region"]

HE_SLIDE_PATH: Path = Path(__file__).with_name("CMU-1-Small-Region.svs")
"""Aperio SVS file "CMU-1-Small-Region" (CC0, OpenSlide test data); see README.md here."""

_FALLBACK_MPP = 0.499
_MPP_PATTERN = re.compile(r"\|\s*MPP\s*=\s*([0-9.]+)")


def _read_mpp(path: Path) -> float:
    """Return the ``MPP = ...`` of an SVS file's first page, or 0.499 when missing or unreadable."""
    try:
        with tifffile.TiffFile(path) as tif:
            description = tif.pages[0].description
    except (OSError, ValueError, tifffile.TiffFileError):
        return _FALLBACK_MPP
    match = _MPP_PATTERN.search(description)
    return float(match.group(1)) if match else _FALLBACK_MPP


HE_MPP: float = _read_mpp(HE_SLIDE_PATH)
"""Microns per pixel of level 0 of :data:`HE_SLIDE_PATH` (about 0.499, 20x)."""


@functools.lru_cache(maxsize=1)
def read_he_region() -> np.ndarray:
    """Read level 0 of the bundled H&E slide.

    Returns
    -------
    numpy.ndarray
        Read-only (2967, 2220, 3) uint8 RGB array (rows, columns, channels). Cached:
        every call returns the same array.
    """
    with tifffile.TiffFile(HE_SLIDE_PATH) as tif:
        rgb = tif.series[0].levels[0].asarray()
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    rgb.flags.writeable = False
    return rgb


def ihc_tile() -> np.ndarray:
    """Return scikit-image's immunohistochemistry sample (DAB + hematoxylin).

    Returns
    -------
    numpy.ndarray
        (512, 512, 3) uint8 RGB image.
    """
    from skimage import data

    return data.immunohistochemistry()
