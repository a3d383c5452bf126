"""The cap on the pixels of a whole-image read, checked on the declared size before any pixel.

A file may declare any size: a 100 KB tiled TIFF can declare 40,000 x 40,000 pixels, and
reading it whole would need gigabytes. Every read of a whole image or level (``read_image``,
the tissue and thumbnail overviews of a slide, a single-level image handed to napari) is
checked against one cap, like Pillow's ``MAX_IMAGE_PIXELS``. Raise it per call
(``max_pixels=``), on the command line (``--max-pixels``) or for the process with the
environment variable ``NAPARI_GRADCAM_MAX_PIXELS``.

Examples
--------
>>> check_pixels((100, 200), "x.png", "tile it", limit=20_000)  # at the cap: passes
>>> plane_shape((5, 100, 200, 3))  # five RGB frames count as one taller image
(500, 200)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

MAX_PIXELS_ENV = "NAPARI_GRADCAM_MAX_PIXELS"
"""Environment variable that sets the cap for the process."""

DEFAULT_MAX_PIXELS = 8192 * 8192
"""67,108,864 pixels: about 200 MB of 8-bit RGB, 800 MB once in float32."""


RAISE_HINT = f"raise the limit with --max-pixels or {MAX_PIXELS_ENV} if this machine has the memory"
"""How to raise the cap: ends every refusal."""


PYRAMID_ADVICE = (
    "save it as a pyramid with lower-resolution levels, e.g. "
    "`vips tiffsave SLIDE PYRAMID.tif --tile --pyramid --compression jpeg`"
)
"""What to do with a slide whose coarsest level is too large to read whole."""


class TooManyPixels(ValueError):
    """An image declares more pixels than may be read whole."""


def max_pixels(explicit: int | None = None) -> int:
    """Return the cap: ``explicit``, else ``$NAPARI_GRADCAM_MAX_PIXELS``, else the default.

    Raises
    ------
    ValueError
        When the value given is not a positive whole number.
    """
    if explicit is not None:
        return _positive(explicit, "max_pixels")
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        return parse_pixel_count(text)
    except ValueError as err:
        raise ValueError(
            f"{MAX_PIXELS_ENV}={text!r}: {err}; set it to a pixel count such as "
            f"{DEFAULT_MAX_PIXELS * 4}, or unset it"
        ) from None


def parse_pixel_count(text: str) -> int:
    """Parse a positive pixel count written ``67108864``, ``67_108_864`` or ``67,108,864``.

    Raises
    ------
    ValueError
        When ``text`` is not a whole number of at least 1.
    """
    try:
        value = int(text.strip().replace(",", "").replace("_", ""))
    except ValueError:
        raise ValueError(f"not a whole number of pixels: {text!r}") from None
    return _positive(value, "the pixel count")


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
    return value


def plane_shape(shape: Sequence[int]) -> tuple[int, int]:
    """The ``(height, width)`` whose product counts the pixels of a declared array shape.

    A trailing axis of at most 4 (colour samples) is not counted; leading axes (frames, planes)
    stack up as a taller image.
    """
    dims = [int(n) for n in shape]
    if len(dims) >= 3 and dims[-1] <= 4:
        dims = dims[:-1]
    if not dims:
        return (1, 1)
    height = 1
    for n in dims[:-1]:
        height *= n
    return (height, dims[-1])


def check_pixels(shape: Sequence[int], what: str, advice: str, *, limit: int | None = None) -> None:
    """Raise :class:`TooManyPixels` when a ``(height, width)`` image is over the cap.

    Parameters
    ----------
    shape : sequence of int
        The declared ``(height, width)``.
    what : str
        What is read, for the message (a file name, "level 2 of x.svs").
    advice : str
        What to do instead (ends the message before the advice on raising the cap).
    limit : int, optional
        The cap; default :func:`max_pixels`.
    """
    height, width = (int(n) for n in shape[:2])
    cap = max_pixels(limit)
    if height * width <= cap:
        return
    instead = f"{advice}; or " if advice else ""
    raise TooManyPixels(
        f"{what} is {height:,} x {width:,} pixels ({height * width:,}), over the limit of "
        f"{cap:,} pixels read at once; {instead}{RAISE_HINT}"
    )
