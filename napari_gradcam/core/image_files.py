"""Read images from files: TIFF/SVS, Pillow formats and ``.npy``, within the pixel cap."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from napari_gradcam.core.pixel_limit import RAISE_HINT, TooManyPixels, check_pixels, plane_shape
from napari_gradcam.core.pixel_limit import max_pixels as pixel_cap

TIFF_SUFFIXES = {".tif", ".tiff", ".svs", ".ome.tif", ".ome.tiff"}
IMAGE_SUFFIXES = (
    ".ome.tiff",
    ".ome.tif",
    ".tiff",
    ".tif",
    ".svs",
    ".png",
    ".jpeg",
    ".jpg",
    ".npy",
    ".bmp",
    ".gif",
    ".webp",
)
"""Image file suffixes, longest first (names of outputs drop them: see ``output_stem``)."""


def read_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read a 2-D image: TIFF/SVS (largest level), PNG/JPEG, or a ``.npy`` array.

    The size the file declares is checked against the pixel cap before any pixel is read
    (:mod:`napari_gradcam.core.pixel_limit`).

    Parameters
    ----------
    max_pixels : int, optional
        The most pixels read whole; default ``$NAPARI_GRADCAM_MAX_PIXELS`` or 8192 x 8192.

    Raises
    ------
    TooManyPixels
        When the image declares more pixels than the cap, saying how to explain it instead.
    ValueError
        When the file is missing, unreadable or not an image, with what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no image file {str(path)!r}")
    cap = pixel_cap(max_pixels)
    try:
        if path.suffix.lower() == ".npy":
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            check_pixels(plane_shape(mapped.shape), path.name, TILED_ADVICE, limit=cap)
            return np.array(mapped)
        if image_suffix(path.name) in TIFF_SUFFIXES:
            return _read_tiff(path, cap)
        return _read_pillow(path, cap)
    except (TooManyPixels, MemoryError):
        raise
    except Exception as err:
        raise ValueError(
            f"cannot read {path} as an image ({err}); use TIFF, PNG, JPEG or .npy"
        ) from err


TILED_ADVICE = (
    "explain it tile by tile with `napari-gradcam slide FILE --out DIR` (a tiled TIFF or "
    "pyramid) or in napari's tiled run, or cut it into smaller images"
)
"""What to do with an image too large to read whole."""


def _read_tiff(path: Path, cap: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        level = tiff.series[0].levels[0]
        check_pixels(plane_shape(level.shape), path.name, TILED_ADVICE, limit=cap)
        return level.asarray()


def _read_pillow(path: Path, cap: int) -> np.ndarray:
    """Read a PNG, JPEG or other Pillow image; Pillow's own bomb limit follows the cap."""
    import imageio.v3 as iio
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and cap > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = cap  # the user raised the cap: let Pillow read that far too
    try:
        with warnings.catch_warnings():  # the cap below decides, with its own advice
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            declared = iio.improps(path).shape
    except Image.DecompressionBombError as err:
        raise TooManyPixels(
            f"{path.name} declares more pixels than Pillow reads ({err}), over the limit of "
            f"{cap:,} pixels read at once; {TILED_ADVICE}; or {RAISE_HINT}"
        ) from err
    check_pixels(plane_shape(declared), path.name, TILED_ADVICE, limit=cap)
    return iio.imread(path)


def image_suffix(name: str, known: tuple[str, ...] = IMAGE_SUFFIXES) -> str:
    """The longest of the ``known`` suffixes that ``name`` ends with (any case), else ``""``."""
    lowered = name.lower()
    return next((suffix for suffix in known if lowered.endswith(suffix)), "")
