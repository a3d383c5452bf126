"""The ``--max-pixels`` option: the cap on the pixels of an image or level read whole."""

from __future__ import annotations

import argparse

from napari_gradcam.core.pixel_limit import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, parse_pixel_count


def positive_pixels(text: str) -> int:
    """Parse ``--max-pixels`` (see :func:`~napari_gradcam.core.pixel_limit.parse_pixel_count`)."""
    try:
        return parse_pixel_count(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """Register ``--max-pixels`` (default: ``$NAPARI_GRADCAM_MAX_PIXELS`` or 8192 x 8192)."""
    parser.add_argument(
        "--max-pixels",
        type=positive_pixels,
        metavar="N",
        help=f"refuse images (and slide overviews) that declare more pixels than this, before "
        f"reading them (default: ${MAX_PIXELS_ENV} or {DEFAULT_MAX_PIXELS:,})",
    )
