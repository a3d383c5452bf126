"""Read images and write explanation outputs safely (atomic, never a silent overwrite)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
"""Image file suffixes, longest first, that output names drop (see :func:`output_stem`)."""


def read_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read a 2-D image: TIFF/SVS (largest level), PNG/JPEG, or a ``.npy`` array.

    The size the file declares is checked against the pixel cap before any pixel is read
    (:mod:`napari_gradcam.core.pixel_limit`).

    Parameters
    ----------
    path : str or Path
        The image file.
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


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` all or nothing, and durably: a crash leaves the old file or the new one.

    ``write`` fills a temporary file in the same folder; the file is flushed to disk
    (``fsync``), renamed over ``path``, and the folder is flushed too, so that after a power
    cut the name points at the complete new file or still at the old one, never at a torn
    one. On error the temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent
    )
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~current_umask())
        fsync_file(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_file(path: Path) -> None:
    """Flush a written file's bytes to the disk."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to the disk; a no-op where unsupported."""
    if os.name == "nt":  # Windows cannot open a folder; NTFS journals the rename itself
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder``, and ``folder`` itself, to the disk.

    For outputs that are folders (a zarr store), before they are renamed into place.
    """
    for path in sorted(folder.rglob("*"), reverse=True):  # children before their folder
        if path.is_dir():
            fsync_folder(path)
        elif path.is_file():
            fsync_file(path)
    fsync_folder(folder)


def current_umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def image_suffix(name: str, known: tuple[str, ...] = IMAGE_SUFFIXES) -> str:
    """The longest of the ``known`` suffixes that ``name`` ends with (any case), else ``""``."""
    lowered = name.lower()
    return next((suffix for suffix in known if lowered.endswith(suffix)), "")


def output_stem(path: Path, known: tuple[str, ...], fallback: str) -> str:
    """The name outputs of ``path`` are called after: its file name less a known suffix.

    Only a known suffix is dropped (``scan.overlay.png`` gives ``scan.overlay``, so its outputs
    never take the name of ``scan.png``'s), and leading dots are dropped so that no output is
    a hidden file; a name left empty (``.png``) becomes ``fallback``.

    Examples
    --------
    >>> output_stem(Path("a/scan.overlay.png"), IMAGE_SUFFIXES, "image")
    'scan.overlay'
    >>> output_stem(Path("x.OME.TIFF"), IMAGE_SUFFIXES, "image")
    'x'
    >>> output_stem(Path(".png"), IMAGE_SUFFIXES, "image")
    'image'
    """
    name = path.name
    stem = name[: len(name) - len(image_suffix(name, known))].lstrip(".")
    return stem or fallback


def check_outputs(
    plans: list[list[Path]], inputs: str, overwrite: bool, sources: Sequence[Path] = ()
) -> None:
    """Refuse outputs that would replace an input, clash, or (without ``overwrite``) exist.

    Parameters
    ----------
    plans : list of list of Path
        The output paths of each input.
    inputs : str
        What the inputs are, for the message ("images", "slides").
    overwrite : bool
        Whether existing outputs may be replaced.
    sources : sequence of Path
        The input files or folders, never written over, ``overwrite`` or not.
    """
    outputs = [path for plan in plans for path in plan]
    refuse_replacing_inputs(outputs, sources)
    names = [path.name for path in outputs]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ValueError(f"several {inputs} would write the same outputs: {clashes}; rename them")
    if not overwrite:
        refuse_overwrite(outputs)


def refuse_replacing_inputs(outputs: list[Path], sources: Sequence[Path]) -> None:
    """Raise ``ValueError`` when an output is an input (same file, through any link) or holds one.

    Raises
    ------
    ValueError
        Naming the output and the input, and saying to choose another output folder.
    """
    present = [Path(source) for source in sources if Path(source).exists()]
    for output in outputs:
        if not output.exists():
            continue
        for source in present:
            inside = output.is_dir() and source.resolve().is_relative_to(output.resolve())
            if inside or os.path.samefile(output, source):
                raise ValueError(
                    f"the output {output} would replace the input {source}; choose another "
                    "--out folder or rename the input"
                )


def refuse_overwrite(paths: list[Path]) -> None:
    """Raise ``FileExistsError`` naming the outputs that already exist."""
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise FileExistsError(
            f"{len(existing)} output file(s) already exist, e.g. {existing[0]}; "
            "choose another --out folder or pass --overwrite"
        )


def save_array(path: Path, array: np.ndarray) -> None:
    """Save a raw map as ``.npy`` or ``.tif`` (float32), atomically."""
    if path.suffix == ".npy":
        atomic_write(path, lambda tmp: np.save(tmp, array, allow_pickle=False))
    else:
        import tifffile

        atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array.astype(np.float32)))


def save_png(path: Path, rgb: np.ndarray) -> None:
    """Save an RGB uint8 image as PNG, atomically."""
    import imageio.v3 as iio

    atomic_write(path, lambda tmp: iio.imwrite(tmp, rgb, extension=".png"))


def save_json(path: Path, data: dict) -> None:
    """Save ``data`` as indented, strict JSON (see :func:`json_text`), atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json_text(data, indent=2) + "\n"))


def json_text(data: Any, indent: int | None = None) -> str:
    """Strict JSON of ``data``: a number that is not finite (NaN, inf) is written ``null``.

    Python's ``json`` writes NaN and inf as bare ``NaN``/``Infinity``, which is not JSON:
    other readers refuse the file. Here ``null`` means "no finite value" (e.g. a correlation
    over a constant map). numpy scalars and arrays are written as numbers and lists.
    """
    return json.dumps(finite_or_null(data), indent=indent, allow_nan=False)


def finite_or_null(data: Any) -> Any:
    """``data`` with numpy values made plain and every non-finite number made ``None``."""
    if isinstance(data, dict):
        return {key: finite_or_null(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_null(value) for value in data]
    if isinstance(data, np.ndarray):
        return finite_or_null(data.tolist())
    if isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data
