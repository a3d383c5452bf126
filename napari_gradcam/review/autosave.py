"""Autosaved annotations: one file per image in a per-user folder, written atomically.

An autosave holds what a crash would lose and cannot be recomputed: the annotations (polygons
in level-0 pixels of the image, labels, colours, notes, statistics), the label list and the
image reference. Heatmaps are left out (Explain makes them again). The file is written to a
temporary file and renamed into place, so it is always a whole autosave, and it lives in the
autosave folder only, never next to the user's own saved reviews.

Nothing read is lost: a file that cannot be read whole is renamed beside itself
(``<key>.unreadable-<time>.json``); a partial read names what it skipped. Each file records
its writer (one id per window) and revision, so two windows on one image notice each other:
the second writes its own ``<key>.<writer>.json`` instead of replacing the first's.

The folder is ``$NAPARI_GRADCAM_AUTOSAVE_DIR`` if set, else ``$XDG_STATE_HOME`` (default
``~/.local/state``) ``/napari-gradcam/autosave``; on Windows ``%LOCALAPPDATA%``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.output_files import atomic_write, json_text
from napari_gradcam.core.regions.bounded_json import loads_bounded
from napari_gradcam.core.regions.geojson import (
    Annotation,
    from_geojson,
    geojson_limits,
    to_feature_collection,
)
from napari_gradcam.review.session import ImageRef
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


class AutosaveSetAside(ValueError):
    """An autosave that could not be read whole was moved aside (never deleted).

    Attributes
    ----------
    moved_to : Path
        Where the unreadable file now is.
    """

    def __init__(self, reason: str, moved_to: Path) -> None:
        super().__init__(
            f"the autosave could not be read ({reason}); it was kept as {moved_to.name} in "
            f"{moved_to.parent}"
        )
        self.moved_to = moved_to


@dataclass
class Autosave:
    """One image's autosaved annotations.

    ``writer`` and ``revision`` say which window wrote it and how often: a window that finds
    another stamp than the one it last read or wrote knows another window saved in between.
    ``skipped`` names the features that could not be read, of ``total`` in the file.
    """

    key: str
    image: ImageRef
    annotations: list[Annotation] = field(default_factory=list)
    labels: dict[str, list[int]] = field(default_factory=dict)
    annotations_name: str = "annotations"
    saved_at: datetime = field(default_factory=datetime.now)
    writer: str = ""
    revision: int = 0
    skipped: list[str] = field(default_factory=list)
    total: int = 0
    path: Path | None = None

    @property
    def stamp(self) -> tuple[str, int]:
        """``(writer, revision)``."""
        return self.writer, self.revision

    def summary(self) -> str:
        """``"Recover 3 annotations autosaved at 14:05"`` (the date too when not today).

        A partial read says ``"Recover 49 of 50 annotations ... (1 could not be read)"``.
        """
        when = self.saved_at.strftime("%H:%M")
        if self.saved_at.date() != datetime.now().date():
            when = self.saved_at.strftime("%Y-%m-%d %H:%M")
        count = len(self.annotations)
        if not self.skipped:
            return f"Recover {count} annotation{'s' * (count != 1)} autosaved at {when}"
        return (
            f"Recover {count} of {self.total} annotations autosaved at {when} "
            f"({len(self.skipped)} could not be read)"
        )


def autosave_path(key: str, folder: Path | None = None, writer: str = "") -> Path:
    """Path of the autosave of image ``key`` (``writer``: a window's own, after a conflict)."""
    return (folder or autosave_dir()) / (f"{key}.{writer}.json" if writer else f"{key}.json")


def autosave_paths(key: str, folder: Path | None = None) -> list[Path]:
    """Every autosave of image ``key``: the shared one, then windows' own, oldest first."""
    named = re.compile(rf"{re.escape(key)}\.w[0-9a-f]{{8}}\.json")
    found = (folder or autosave_dir()).glob(f"{key}.w*.json")
    own = sorted((p for p in found if named.fullmatch(p.name)), key=_modified)
    return [autosave_path(key, folder), *own]


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def new_writer_id() -> str:
    """A window's writer id (``w`` and 8 hex digits)."""
    return f"w{uuid.uuid4().hex[:8]}"


def write_autosave(
    autosave: Autosave, folder: Path | None = None, path: Path | None = None
) -> Path:
    """Write ``autosave`` atomically (temporary file, then ``os.replace``); return its path.

    ``path`` defaults to the shared autosave of its image.
    """
    data = {
        "format": FORMAT,
        "version": VERSION,
        "key": autosave.key,
        "writer": autosave.writer,
        "revision": autosave.revision,
        "image": {**vars(autosave.image), "sample": autosave.image.sample},
        "saved_at": autosave.saved_at.isoformat(timespec="seconds"),
        "labels": autosave.labels,
        "annotations_name": autosave.annotations_name,
        "annotations": to_feature_collection(autosave.annotations),
    }
    text = json_text(data)
    path = path or autosave_path(autosave.key, folder)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def set_aside(path: Path, why: str) -> Path:
    """Rename ``path`` to ``<name>.<why>-<timestamp>.json`` beside it (never replacing a file)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        suffix = f"-{attempt}" if attempt else ""
        target = path.with_name(f"{path.stem}.{why}-{stamp}{suffix}.json")
        if not target.exists():
            os.rename(path, target)  # replaces nothing: the target was just seen missing
            return target
    raise OSError(f"no free name beside {path} to set it aside")


def _stamp(data: dict[str, Any]) -> tuple[str, int]:
    writer, revision = data.get("writer", ""), data.get("revision", 0)
    if not isinstance(writer, str) or not isinstance(revision, int) or isinstance(revision, bool):
        raise ValueError("its writer or revision is not valid")
    return writer, revision


STAMP = re.compile(rb'"writer": "(w[0-9a-f]{8}|)", "revision": (\d{1,18})')
"""Where :func:`write_autosave` puts the stamp: near the start of the file."""


def read_stamp(path: Path) -> tuple[str, int] | None:
    """``(writer, revision)`` of the autosave at ``path``; None when there is none or unreadable.

    The stamp is read from the file's first kilobyte; an older file without one is parsed.
    """
    try:
        with path.open("rb") as file:
            found = STAMP.search(file.read(1024))
        if found:
            return found[1].decode(), int(found[2])
        return _stamp(loads_bounded(path.read_bytes(), geojson_limits(), path.name))
    except (OSError, ValueError, AttributeError):
        return None


def _parse(key: str, path: Path) -> Autosave:
    data = loads_bounded(path.read_bytes(), geojson_limits(), path.name)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("it is not a napari-gradcam autosave")
    version = data.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"a newer napari-gradcam (autosave version {version}) wrote it; update to recover it"
        )
    image = data["image"]
    sample = image.get("sample")
    features = data["annotations"].get("features")
    read = from_geojson(data["annotations"])
    return Autosave(
        key,
        ImageRef(str(image["name"]), image.get("path"), tuple(sample) if sample else None),
        read.annotations,
        {str(k): list(v) for k, v in data.get("labels", {}).items()},
        str(data.get("annotations_name", "annotations")),
        datetime.fromisoformat(data["saved_at"]),
        *_stamp(data),
        skipped=read.skipped,
        total=len(features) if isinstance(features, list) else len(read.annotations),
        path=path,
    )


def read_autosave(
    key: str, folder: Path | None = None, path: Path | None = None
) -> Autosave | None:
    """Return the autosave of image ``key`` (at ``path``, default its shared one); None if none.

    Features that cannot be read are named in ``Autosave.skipped``; the file is left as it is.

    Raises
    ------
    AutosaveSetAside
        When the file cannot be read whole (damaged, written by a newer version, too large):
        it has been renamed beside itself, never deleted.
    """
    path = path or autosave_path(key, folder)
    if not path.exists():
        return None
    try:
        return _parse(key, path)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        reason = str(err) if not isinstance(err, KeyError) else f"it has no {err}"
        raise AutosaveSetAside(reason, set_aside(path, "unreadable")) from err


def discard_autosave(key: str, folder: Path | None = None, path: Path | None = None) -> None:
    """Delete the autosave of image ``key`` (at ``path``); nothing happens if there is none."""
    (path or autosave_path(key, folder)).unlink(missing_ok=True)
