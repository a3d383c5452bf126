"""Autosaved annotations: one file per image in a per-user folder, written atomically.

An autosave holds what a crash would lose and cannot be recomputed: the annotations (polygons
in level-0 pixels of the image, labels, colours, notes, statistics), the label list and the
image reference. Heatmaps are left out (Explain makes them again). The file is written to a
temporary file and renamed into place, so it is always a whole autosave, and it lives in the
autosave folder only, never next to the user's own saved reviews.

The folder is ``$NAPARI_GRADCAM_AUTOSAVE_DIR`` if set, else ``$XDG_STATE_HOME`` (default
``~/.local/state``) ``/napari-gradcam/autosave``; on Windows ``%LOCALAPPDATA%``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.regions.geojson import Annotation, from_geojson, to_feature_collection
from napari_gradcam.files import atomic_write, json_text
from napari_gradcam.session import ImageRef
from napari_gradcam.user_state import state_dir

FORMAT = "napari-gradcam autosave"
VERSION = 1
HASHED_BYTES = 64 * 2**20
"""Content hashes read at most this many bytes of the array (evenly strided beyond)."""


def autosave_dir() -> Path:
    """Return the per-user folder of autosaves (not created here)."""
    explicit = os.environ.get("NAPARI_GRADCAM_AUTOSAVE_DIR")
    return Path(explicit) if explicit else state_dir() / "autosave"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:32]


def file_key(path: str | Path) -> str:
    """Identity of an image file: its resolved path, size and modification time."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _digest("file", resolved, stat.st_size, stat.st_mtime_ns)


def sample_key(plugin: str, sample: str) -> str:
    """Identity of a napari sample image."""
    return _digest("sample", plugin, sample)


def content_key(array: Any) -> str:
    """Identity of unsaved pixels: shape, dtype and a hash of (at most 64 MiB of) the values.

    Beyond ``HASHED_BYTES`` the rows are strided evenly, so a large array is read in part.
    """
    data = np.asarray(array)
    step = max(1, int(np.ceil(data.nbytes / HASHED_BYTES))) if data.ndim else 1
    sampled = np.ascontiguousarray(data[::step] if data.ndim else data)
    digest = hashlib.sha256(sampled.tobytes()).hexdigest()
    return _digest("content", data.shape, data.dtype.str, step, digest)


@dataclass
class Autosave:
    """One image's autosaved annotations."""

    key: str
    image: ImageRef
    annotations: list[Annotation] = field(default_factory=list)
    labels: dict[str, list[int]] = field(default_factory=dict)
    annotations_name: str = "annotations"
    saved_at: datetime = field(default_factory=datetime.now)

    def summary(self) -> str:
        """``"Recover 3 annotations autosaved at 14:05"`` (the date too when not today)."""
        when = self.saved_at.strftime("%H:%M")
        if self.saved_at.date() != datetime.now().date():
            when = self.saved_at.strftime("%Y-%m-%d %H:%M")
        count = len(self.annotations)
        return f"Recover {count} annotation{'s' * (count != 1)} autosaved at {when}"


def autosave_path(key: str, folder: Path | None = None) -> Path:
    """Path of the autosave of image ``key``."""
    return (folder or autosave_dir()) / f"{key}.json"


def write_autosave(autosave: Autosave, folder: Path | None = None) -> Path:
    """Write ``autosave`` atomically (temporary file, then ``os.replace``); return its path."""
    data = {
        "format": FORMAT,
        "version": VERSION,
        "key": autosave.key,
        "image": {**vars(autosave.image), "sample": autosave.image.sample},
        "saved_at": autosave.saved_at.isoformat(timespec="seconds"),
        "labels": autosave.labels,
        "annotations_name": autosave.annotations_name,
        "annotations": to_feature_collection(autosave.annotations),
    }
    text = json_text(data)
    path = autosave_path(autosave.key, folder)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def read_autosave(key: str, folder: Path | None = None) -> Autosave | None:
    """Return the autosave of image ``key``, or None when there is none or it is unreadable."""
    path = autosave_path(key, folder)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("version", 0) > VERSION:
            return None
        image = data["image"]
        sample = image.get("sample")
        read = from_geojson(data["annotations"])
        return Autosave(
            key,
            ImageRef(str(image["name"]), image.get("path"), tuple(sample) if sample else None),
            read.annotations,
            {str(k): list(v) for k, v in data.get("labels", {}).items()},
            str(data.get("annotations_name", "annotations")),
            datetime.fromisoformat(data["saved_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def discard_autosave(key: str, folder: Path | None = None) -> None:
    """Delete the autosave of image ``key`` (nothing happens if there is none)."""
    autosave_path(key, folder).unlink(missing_ok=True)
