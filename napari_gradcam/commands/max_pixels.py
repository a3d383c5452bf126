"""The ``--max-pixels`` option: the cap on the pixels of an image or level read whole."""

from __future__ import annotations

import argparse

from napari_gradcam.core.pixel_limit import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV


def positive_pixels(text: str) -> int:
    """Parse a pixel count (``67108864``, ``67_108_864`` or ``67,108,864``)."""
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of pixels: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 pixel, got {value}")
    return value


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """Register ``--max-pixels`` (default: ``$NAPARI_GRADCAM_MAX_PIXELS`` or 8192 x 8192)."""
    parser.add_argument(
        "--max-pixels",
        type=positive_pixels,
        metavar="N",
        help=f"refuse images (and slide overviews) that declare more pixels than this, before "
        f"reading them (default: ${MAX_PIXELS_ENV} or {DEFAULT_MAX_PIXELS:,})",
    )
