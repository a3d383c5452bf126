"""The on-disk cache of slide embeddings: it serves only what the same inputs would compute.

**Key.** A hash of everything that decides the embeddings: the slide's content, the encoder
(its code, weights and card: see :func:`encoder_identity` and :func:`model_identity`; the
weights by their values in memory), the tile plan's parameters
(tile size, mpp, overlap, tissue threshold), this package's code that plans the tiles, and the
entry format. Contents are in it, not paths or names: two different encoders both called
``enc.py:build`` in two project folders get two keys, and a renamed slide keeps its key.

**Slide content.** A file of at most :data:`WHOLE_FILE_BYTES` is hashed whole. A larger file
is hashed by its size, its TIFF structure when tifffile can parse it (every IFD's tags,
including the offsets and byte counts of every tile, so re-encoding any tile changes the key)
and sampled bytes (its first and last MiB and :data:`BLOCKS` evenly spaced 64 KiB blocks);
reading all of a multi-GB slide would make the "second look" about as slow as the first. Its
limit: an edit of a big file that keeps every tile's compressed length and misses every
sampled block (or, for a big non-TIFF file, just misses every sampled block) goes unnoticed;
the cache is for re-reading slides, not for detecting tampering. A DICOM folder is hashed file
by file under the same rules; a slide made in memory (no file) by its shapes and the pixels of
its finest level of at most :data:`WHOLE_FILE_BYTES` (all of them for such a level 0; for a
bigger one, an edit that leaves that level's pixels unchanged goes unnoticed). File size and
modification time are never taken for content.

**Entries.** An ``.npz`` of plain arrays (no pickle), written atomically and durably
(``output_files.atomic_write``). An entry that cannot be read (truncated, empty, bit-flipped, from
another format), that was written under another key, or whose arrays do not fit (rows that are
not one per tile, another embedding width, NaN or infinite values) is a miss: it is logged,
computed anew and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import time
import zipfile
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.output_files import atomic_write
from napari_gradcam.models.sources import encoder_sources, file_digest, package_digest

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.models.slide_model import SlideModel
    from napari_gradcam.slides.lazy_slide import Slide

logger = logging.getLogger(__name__)

CACHE_ENV = "NAPARI_GRADCAM_EMBEDDINGS"
"""Environment variable naming the cache folder (default ``~/.cache/napari-gradcam/embeddings``)."""

FORMAT = 3
"""Version of the cached file's layout and of the key; part of every key."""

WHOLE_FILE_BYTES = 64 << 20
"""Files up to this size are hashed whole."""
EDGE_BYTES = 1 << 20
BLOCK_BYTES = 1 << 16
BLOCKS = 64

ENTRY_ARRAYS = (
    "key",
    "embeddings",
    "origins",
    "region",
    "tile",
    "step",
    "cell",
    "tile_cells",
    "pixel_size",
    "level",
    "tissue",
)
"""The arrays every entry holds."""
STALE_SECONDS = 3600
"""A temporary entry file this old belongs to a run that was killed while writing it."""
UNREADABLE = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)
"""How a torn, empty or bit-flipped ``.npz`` fails: in zipfile, zlib, numpy's header, the OS."""


def default_cache_dir() -> Path:
    """The cache folder: ``$NAPARI_GRADCAM_EMBEDDINGS``, else ``~/.cache/napari-gradcam/...``."""
    given = os.environ.get(CACHE_ENV)
    return Path(given).expanduser() if given else Path.home() / ".cache/napari-gradcam/embeddings"


def file_fingerprint(path: Path) -> str:
    """SHA-256 of a file's content: whole when small, else structure and samples (see above)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= WHOLE_FILE_BYTES:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
            return digest.hexdigest()
        digest.update(f"{size} bytes".encode())
        digest.update(tiff_structure(path).encode())
        for start, length in sampled_blocks(size):
            handle.seek(start)
            digest.update(handle.read(length))
    return digest.hexdigest()


def sampled_blocks(size: int) -> list[tuple[int, int]]:
    """``(start, length)`` of the first and last MiB and :data:`BLOCKS` blocks between."""
    starts = np.linspace(0, max(0, size - BLOCK_BYTES), BLOCKS).astype(int) if BLOCKS else []
    return [(0, EDGE_BYTES), (max(0, size - EDGE_BYTES), EDGE_BYTES)] + [
        (int(start), BLOCK_BYTES) for start in starts
    ]


def tiff_structure(path: Path) -> str:
    """SHA-256 of every IFD's tags of a TIFF (all pages and pyramid levels), ``""`` if not one."""
    import tifffile

    digest = hashlib.sha256()
    try:
        with tifffile.TiffFile(path) as tiff:
            pages = {page.offset: page for page in tiff.pages}
            for series in tiff.series:
                for level in series.levels:
                    pages.update((page.offset, page) for page in level.pages if page is not None)
            for offset in sorted(pages):
                page = pages[offset]
                digest.update(str(offset).encode())
                digest.update(np.asarray(page.dataoffsets, np.int64).tobytes())
                digest.update(np.asarray(page.databytecounts, np.int64).tobytes())
                for tag in getattr(page, "tags", {}).values():  # a TiffFrame has no tags
                    digest.update(f"{tag.code}:{tag.dtype}:{tag.count}:".encode())
                    digest.update(_tag_bytes(tag.value))
    except (tifffile.TiffFileError, ValueError, OSError):
        return ""
    return digest.hexdigest()


def _tag_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return repr(value).encode()


def slide_fingerprint(slide: Slide) -> str:
    """The slide's content key: its file (or DICOM folder), else its pixels (see above)."""
    digest = hashlib.sha256()
    path = slide.path
    if path is not None and path.is_dir():
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(member.relative_to(path).as_posix().encode())
            digest.update(file_fingerprint(member).encode())
    elif path is not None:
        digest.update(file_fingerprint(path).encode())
    else:
        digest.update(repr(slide.level_shapes).encode())
        small = [i for i, level in enumerate(slide.levels) if level.nbytes <= WHOLE_FILE_BYTES]
        level = small[0] if small else len(slide.levels) - 1
        pixels = slide.read_region(level, (0, 0, *slide.level_shapes[level][:2]))
        digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def encoder_identity(model: SlideModel) -> dict[str, Any]:
    """What decides a slide model's encoder output: its files, its weights and its card.

    The card it runs with (mean, std, tile size, mpp, ...) and the weights are taken as
    loaded (see :func:`model_identity`); the files (``models.sources``) as they are on disk now.
    """
    sources = encoder_sources(model.source["encoder"], Path.cwd())  # its paths are absolute
    return {
        **model_identity(model.encoder),
        "sources": sources.content_digest(),
        "mpp": model.mpp,
        "width": model.width,
    }


def model_identity(model: LoadedModel) -> dict[str, Any]:
    """What decides a loaded model's output as it is in memory: code, weights and card.

    The code is that of the files defining its modules' classes (see
    :func:`module_code_digest`), the weights their values (:func:`weights_fingerprint`), so a
    model built in memory, or retrained in place, never reads another model's embeddings.
    """
    return {
        "code": module_code_digest(model.module),
        "weights": weights_fingerprint(model.module),
        "card": asdict(model.card),
    }


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer: name, dtype, shape and bytes, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().reshape(-1).contiguous().cpu()
        digest.update(f"{name} {flat.dtype} {tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def module_code_digest(module: nn.Module) -> str:
    """SHA-256 of the module tree (names and classes) and of the files defining its classes.

    A class without a source file (built-in, TorchScript) counts by its qualified name alone.
    """
    digest = hashlib.sha256()
    files: set[str] = set()
    for name, child in module.named_modules():
        kind = type(child)
        digest.update(f"{name} {kind.__module__}.{kind.__qualname__}".encode())
        with contextlib.suppress(TypeError, OSError):
            source = inspect.getsourcefile(kind)
            if source is not None:
                files.add(source)
    for source in sorted(files):
        digest.update(file_digest(Path(source)).encode())
    return digest.hexdigest()


def embedding_key(slide_key: str, encoder: dict[str, Any], tiling: dict[str, Any]) -> str:
    """The cache key of one slide embedded by one encoder with one tiling.

    The tiling's parameters are read by this package's code (tissue detection, level choice,
    tile grid), so its code (``package_digest``) is part of the key too.
    """
    planner = package_digest(__name__.partition(".")[0])
    text = json.dumps(
        {
            "format": FORMAT,
            "slide": slide_key,
            "encoder": encoder,
            "tiling": tiling,
            "planner": planner,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_cached(folder: Path, key: str, width: int) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``key``, or None on a miss (a missing or unusable entry).

    An unusable entry (see the module docstring) is logged; the caller computes the
    embeddings anew and :func:`write_cached` replaces it.
    """
    path = folder / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except UNREADABLE as err:
        reason = f"unreadable ({type(err).__name__}: {err})"
        logger.warning("cached embeddings %s are %s; computing them anew", path, reason)
        return None
    problem = entry_problem(arrays, key, width)
    if problem is not None:
        logger.warning("cached embeddings %s: %s; computing them anew", path, problem)
        return None
    return arrays


def entry_problem(arrays: dict[str, np.ndarray], key: str, width: int) -> str | None:
    """Why an entry cannot serve ``key`` for a ``width``-wide encoder, or None if it can."""
    missing = [name for name in ENTRY_ARRAYS if name not in arrays]
    if missing:
        return f"it lacks {missing}"
    if arrays["key"].shape != () or str(arrays["key"]) != key:
        return "it was written under another key"
    embeddings, origins, tissue = arrays["embeddings"], arrays["origins"], arrays["tissue"]
    if embeddings.ndim != 2 or not np.issubdtype(embeddings.dtype, np.floating):
        return f"its embeddings are {embeddings.dtype} {embeddings.shape}, not (tiles, width)"
    if embeddings.shape[1] != width:
        return f"its embeddings are {embeddings.shape[1]} wide; the encoder gives {width}"
    if origins.ndim != 2 or origins.shape[1] != 2 or len(origins) == 0:
        return f"its tile origins have shape {origins.shape}, not (tiles, 2)"
    if not len(embeddings) == len(origins) == len(tissue):
        return f"it holds {len(embeddings)} embeddings for {len(origins)} tiles"
    if not np.isfinite(embeddings).all():
        return "its embeddings hold NaN or infinite values"
    return None


def write_cached(folder: Path, key: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (and the key) under ``key``, atomically and durably.

    Temporary files of the same key older than :data:`STALE_SECONDS` (left by a run that was
    killed while writing) are removed.
    """
    path = folder / f"{key}.npz"
    entry = {**arrays, "key": np.asarray(key)}
    atomic_write(path, lambda temporary: np.savez(temporary, **entry))
    for temporary in folder.glob(f".{key}.npz.*"):
        with contextlib.suppress(OSError):  # another process may remove it first
            if time.time() - temporary.stat().st_mtime > STALE_SECONDS:
                temporary.unlink()
    return path
