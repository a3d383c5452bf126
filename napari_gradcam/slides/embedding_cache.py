"""The on-disk cache of slide embeddings, keyed by the slide's content and the encoder.

**Slide key.** A hash of the file's size and sampled bytes (its first and last MiB and 16
evenly spaced 64 KiB blocks; every file of a DICOM folder), not of the pixels. Reading the
level-0 tiles to hash them costs about as much as embedding them, which would make the
"second look" as slow as the first; the sampled bytes cost a few reads. Scanners write their
headers (with the scan's date and barcode) and tile offsets at the ends of the file, so a
rescan or another slide changes the key; renaming or moving the file does not. An edit of a
few middle bytes that misses every sampled block would go unnoticed: the cache is for
re-reading slides, not for detecting tampering. A slide made in memory (no file) is keyed by
its shapes and the pixels of its coarsest level.

**Encoder key.** The encoder's spec, the hash of its weights file, the tile size, the mpp and
the tiling (overlap, tissue threshold), so any change there computes anew.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gradcam.files import atomic_write

if TYPE_CHECKING:
    from napari_gradcam.slides.reader import Slide

CACHE_ENV = "NAPARI_GRADCAM_EMBEDDINGS"
"""Environment variable naming the cache folder (default ``~/.cache/napari-gradcam/embeddings``)."""

FORMAT = 1
"""Version of the cached file's layout; part of every key."""

EDGE_BYTES = 1 << 20
BLOCK_BYTES = 1 << 16
BLOCKS = 16


def default_cache_dir() -> Path:
    """The cache folder: ``$NAPARI_GRADCAM_EMBEDDINGS``, else ``~/.cache/napari-gradcam/...``."""
    given = os.environ.get(CACHE_ENV)
    return Path(given).expanduser() if given else Path.home() / ".cache/napari-gradcam/embeddings"


def file_fingerprint(path: Path) -> str:
    """SHA-256 of a file's size and sampled bytes (see the module docstring)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    starts = {0, max(0, size - EDGE_BYTES)}
    starts.update(int(s) for s in np.linspace(0, max(0, size - BLOCK_BYTES), BLOCKS))
    with path.open("rb") as handle:
        for start in sorted(starts):
            handle.seek(start)
            length = EDGE_BYTES if start in (0, max(0, size - EDGE_BYTES)) else BLOCK_BYTES
            digest.update(handle.read(length))
    return digest.hexdigest()


def slide_fingerprint(slide: Slide) -> str:
    """The slide's content key: its file (or DICOM folder) bytes, else its coarsest pixels."""
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
        coarsest = slide.read_region(len(slide.levels) - 1, (0, 0, *slide.level_shapes[-1][:2]))
        digest.update(np.ascontiguousarray(coarsest).tobytes())
    return digest.hexdigest()


def weights_hash(path: str | None) -> str | None:
    """SHA-256 of a whole weights file (None without one)."""
    if path is None:
        return None
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def embedding_key(slide_key: str, encoder: dict[str, Any], tiling: dict[str, Any]) -> str:
    """The cache key of one slide embedded by one encoder with one tiling."""
    encoder = {**encoder, "weights": weights_hash(encoder.get("weights"))}
    text = json.dumps(
        {"format": FORMAT, "slide": slide_key, "encoder": encoder, "tiling": tiling},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_cached(folder: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays cached under ``key``, or None (a missing or unreadable file is a miss)."""
    path = folder / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError):
        return None


def write_cached(folder: Path, key: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` under ``key`` atomically (a temporary file renamed into place)."""
    path = folder / f"{key}.npz"
    atomic_write(path, lambda temporary: np.savez(temporary, **arrays))
    return path
