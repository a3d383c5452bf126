"""Open whole-slide images lazily, whatever the scanner, through one :class:`Slide`.

Three backends read the pixels; :func:`open_slide` chooses one by the file's extension (or
takes the one asked for) and every consumer (the napari reader, the slide runner, the docks'
pyramid-level choice) sees the same thing: lazy levels finest first, their downsamples, and
the microns per level-0 pixel from the format's metadata.

* ``tifffile``: .svs, OME-TIFF (SubIFD levels too) and tiled TIFF; the fast default for them;
* ``openslide``: Hamamatsu, 3DHISTECH, Leica, Ventana, Sakura and the TIFF family;
* ``wsidicom``: DICOM WSI (a folder of ``.dcm`` instances, or one of its files).

Pixels are only read when a region is sliced.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.slides.pyramid import Pyramid, RegionArray

FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    ".svs": ("Aperio SVS", ("tifffile", "openslide")),
    ".tif": ("TIFF, OME-TIFF, Philips TIFF", ("tifffile", "openslide")),
    ".tiff": ("TIFF, OME-TIFF, Philips TIFF", ("tifffile", "openslide")),
    ".ndpi": ("Hamamatsu NDPI", ("openslide",)),
    ".vms": ("Hamamatsu VMS", ("openslide",)),
    ".vmu": ("Hamamatsu VMU", ("openslide",)),
    ".mrxs": ("3DHISTECH MIRAX", ("openslide",)),
    ".scn": ("Leica SCN", ("openslide",)),
    ".bif": ("Ventana BIF", ("openslide",)),
    ".svslide": ("Sakura SVSlide", ("openslide",)),
    ".dcm": ("DICOM WSI (a folder of instances, or one of its files)", ("wsidicom", "openslide")),
}
"""Extension -> (format, backends that read it, the default first)."""

SLIDE_SUFFIXES = tuple(FORMATS)
BACKENDS = ("tifffile", "openslide", "wsidicom")
_OPENERS = {
    "tifffile": ("napari_gradcam.slides.tiff_backend", "open_tiff"),
    "openslide": ("napari_gradcam.slides.openslide_backend", "open_openslide"),
    "wsidicom": ("napari_gradcam.slides.dicom_backend", "open_dicom"),
}


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
    backend : str
        What reads the pixels: ``"tifffile"``, ``"openslide"``, ``"wsidicom"`` or
        ``"memory"`` (levels made in this process, e.g. a synthetic slide).
    """

    levels: tuple[Any, ...]
    downsamples: tuple[tuple[float, float], ...]
    mpp: float | None
    mpp_source: str
    name: str
    path: Path | None = None
    backend: str = "memory"

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of level 0."""
        return tuple(int(n) for n in self.levels[0].shape[:2])

    @property
    def level_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shape of every level."""
        return tuple(tuple(int(n) for n in level.shape) for level in self.levels)

    def read_region(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Pixels of ``level`` inside ``box``.

        Parameters
        ----------
        box : tuple of int
            ``(top, left, bottom, right)`` in that level's pixels, clipped to the level.
        """
        if not 0 <= level < len(self.levels):
            raise ValueError(f"{self.name} has levels 0 to {len(self.levels) - 1}, not {level}")
        top, left, bottom, right = (max(0, int(v)) for v in box)
        block = self.levels[level][top:bottom, left:right]
        compute = getattr(block, "compute", None)
        return compute(scheduler="synchronous") if compute else np.asarray(block)

    def dask_levels(self) -> list[Any]:
        """The levels as dask arrays chunked like the file (for napari)."""
        return [_as_dask(level) for level in self.levels]

    def __reduce__(self) -> tuple:
        if self.path is None:
            return super().__reduce__()
        given = self.mpp if self.mpp_source == "given" else None
        return (reopen, (self.path, given, self.backend, self.path.stat().st_mtime_ns))


def _as_dask(level: Any) -> Any:
    import dask.array as da

    if isinstance(level, da.Array):
        return level
    if isinstance(level, RegionArray):
        chunks = (level.chunk, level.chunk, level.shape[2])
        return da.from_array(
            level, chunks=chunks, asarray=False, meta=np.empty((0, 0, 0), np.uint8)
        )
    return da.from_zarr(level)


@functools.lru_cache(maxsize=8)
def reopen(path: Path, mpp: float | None, backend: str, _mtime_ns: int) -> Slide:
    """Open a slide once per process (a Dask worker unpickles one per batch)."""
    return open_slide(path, mpp, backend=backend)


def open_slide(path: str | Path, mpp: float | None = None, *, backend: str | None = None) -> Slide:
    """Open a slide lazily.

    Parameters
    ----------
    path : str or Path
        A slide file (see :data:`FORMATS`) or a folder holding a DICOM WSI.
    mpp : float, optional
        Microns per level-0 pixel; overrides the file's metadata (and is needed when it has
        none and a model's microns per pixel should be matched).
    backend : str, optional
        ``"tifffile"``, ``"openslide"`` or ``"wsidicom"``; default: the first that reads the
        format (:func:`backends_for`).

    Raises
    ------
    ValueError
        For a missing, unsupported, unreadable, truncated or non-2-D slide, saying what is
        wrong and which formats open.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no slide file {str(path)!r}")
    if mpp is not None and mpp <= 0:
        raise ValueError(f"microns per pixel must be positive, got {mpp}")
    chosen = backend or backends_for(path)[0]
    if chosen not in _OPENERS:
        raise ValueError(f"unknown slide backend {chosen!r}; choose one of {', '.join(BACKENDS)}")
    module, function = _OPENERS[chosen]
    pyramid: Pyramid = getattr(importlib.import_module(module), function)(path)
    source = "given" if mpp is not None else ("metadata" if pyramid.mpp else "unknown")
    # a DICOM slide is a folder of instances: name it after the folder
    name = path.parent.name if chosen == "wsidicom" and path.is_file() else path.name
    return Slide(
        pyramid.levels, pyramid.downsamples, mpp or pyramid.mpp, source, name, path, chosen
    )


def backends_for(path: Path) -> tuple[str, ...]:
    """The backends that read ``path``'s format, the default first.

    Raises
    ------
    ValueError
        For an extension no backend reads, listing the formats that open.
    """
    if path.is_dir():
        if any(path.glob("*.dcm")):
            return FORMATS[".dcm"][1]
        raise ValueError(f"{path} is a folder without DICOM (.dcm) files; {supported_formats()}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot open {path.name}: not a slide format. {supported_formats()}")
    return FORMATS[suffix][1]


def supported_formats() -> str:
    """One sentence naming every format that opens, with its extensions."""
    names: dict[str, list[str]] = {}
    for suffix, (name, _) in FORMATS.items():
        names.setdefault(name, []).append(suffix)
    listed = "; ".join(f"{name} ({', '.join(s)})" for name, s in names.items())
    return f"Slides that open: {listed}."
