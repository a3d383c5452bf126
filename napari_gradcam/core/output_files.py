"""Write explanation outputs safely: atomically, durably, and never over an input or silently."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.image_files import image_suffix


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
