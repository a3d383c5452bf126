"""Review sessions: image reference, heatmaps and annotations saved in one folder and read back.

Layout of a review folder::

    session.json            index: format, version, image reference, heatmaps, labels
    heatmap-00.npy|.tif     one raw map per heatmap (float32) ...
    heatmap-00.json         ... with its metadata (model, method, layer, class, placement)
    annotations.geojson     QuPath GeoJSON: polygons, labels, colours, notes, statistics

Every file is written atomically and ``session.json`` last, so a folder always holds a whole
review. Saving never replaces an existing file unless asked to (``overwrite=True``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_gradcam.core.image_files import read_image
from napari_gradcam.core.output_files import save_array, save_json
from napari_gradcam.core.regions.bounded_json import JSONLimitError, JSONLimits, loads_bounded
from napari_gradcam.core.regions.geojson import Annotation, read_geojson, write_geojson

SESSION_FILE = "session.json"
ANNOTATIONS_FILE = "annotations.geojson"
MAX_INDEX_BYTES = 16 * 2**20
"""A review's ``session.json`` is small: its annotations and maps are files of their own."""
FORMAT = "napari-gradcam review"
VERSION = 1


@dataclass
class ImageRef:
    """Where the reviewed image comes from: a file, or a napari sample ``(plugin, key)``."""

    name: str
    path: str | None = None
    sample: tuple[str, str] | None = None


@dataclass
class SavedHeatmap:
    """One heatmap: the raw map, its metadata, and how it was shown (opacity, limits...)."""

    name: str
    cam: np.ndarray
    metadata: dict[str, Any]
    display: dict[str, Any] = field(default_factory=dict)


@dataclass
class Session:
    """Everything a review needs to be reopened."""

    image: ImageRef
    heatmaps: list[SavedHeatmap] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    labels: dict[str, list[int]] = field(default_factory=dict)
    annotations_name: str = "annotations"


def _jsonable(value: Any) -> Any:
    """Make numpy scalars, arrays and tuples JSON-ready (for ``json.dumps(default=...)``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} in a review")


def _json_copy(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, default=_jsonable))


def _heatmap_files(index: int, suffix: str) -> tuple[str, str]:
    stem = f"heatmap-{index:02d}"
    return f"{stem}{suffix}", f"{stem}.json"


def session_files(session: Session, suffix: str = ".npy") -> list[str]:
    """Return the names of the files a session is saved as."""
    names = [SESSION_FILE, ANNOTATIONS_FILE]
    for index in range(len(session.heatmaps)):
        names += _heatmap_files(index, suffix)
    return names


def _write_heatmaps(
    folder: Path, heatmaps: list[SavedHeatmap], suffix: str
) -> list[dict[str, str]]:
    """Write each map and its facts; return the index entries naming the files."""
    entries = []
    for index, heatmap in enumerate(heatmaps):
        array_name, facts_name = _heatmap_files(index, suffix)
        save_array(folder / array_name, np.asarray(heatmap.cam, dtype=np.float32))
        facts = {"name": heatmap.name, "metadata": heatmap.metadata, "display": heatmap.display}
        save_json(folder / facts_name, _json_copy(facts))
        entries.append({"name": heatmap.name, "array": array_name, "facts": facts_name})
    return entries


def save_session(
    folder: str | Path, session: Session, *, overwrite: bool = False, suffix: str = ".npy"
) -> Path:
    """Save a review into ``folder``; return the path of its ``session.json``.

    Parameters
    ----------
    folder : str or Path
        Created if missing.
    overwrite : bool
        Replace files of an earlier save; without it an existing file raises.
    suffix : {".npy", ".tif"}
        File type of the raw maps.

    Raises
    ------
    FileExistsError
        When a file to be written exists and ``overwrite`` is False; nothing is written then.
    """
    folder = Path(folder)
    if suffix not in (".npy", ".tif"):
        raise ValueError(f"heatmaps are saved as .npy or .tif, not {suffix!r}")
    existing = [name for name in session_files(session, suffix) if (folder / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds a review ({', '.join(existing[:3])}); "
            "choose another folder or confirm replacing it"
        )
    stale = _listed_files(folder) - set(session_files(session, suffix))
    entries = _write_heatmaps(folder, session.heatmaps, suffix)
    write_geojson(folder / ANNOTATIONS_FILE, session.annotations, overwrite=True)
    index_data = {
        "format": FORMAT,
        "version": VERSION,
        "image": _json_copy(vars(session.image)),
        "heatmaps": entries,
        "annotations": ANNOTATIONS_FILE,
        "annotations_name": session.annotations_name,
        "labels": session.labels,
    }
    save_json(folder / SESSION_FILE, index_data)
    for name in stale:
        (folder / name).unlink(missing_ok=True)
    return folder / SESSION_FILE


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / SESSION_FILE
    if not path.is_file():
        raise ValueError(f"{folder} holds no review: {SESSION_FILE} is missing")
    try:
        data = loads_bounded(path.read_bytes(), JSONLimits(max_bytes=MAX_INDEX_BYTES), path.name)
    except JSONLimitError as err:
        raise ValueError(f"{path} is damaged: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a napari-gradcam review")
    version = data.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(f"{path} was saved by a newer napari-gradcam (version {version!r})")
    return data


def _listed_files(folder: Path) -> set[str]:
    """Names of the files the review already in ``folder`` consists of (none if unreadable)."""
    try:
        data = _read_index(folder)
    except ValueError:
        return set()
    names = {SESSION_FILE, str(data.get("annotations", ANNOTATIONS_FILE))}
    for entry in data.get("heatmaps", []):
        names |= {str(entry["array"]), str(entry["facts"])}
    return {Path(name).name for name in names}


def _read_heatmap(folder: Path, entry: dict[str, Any]) -> SavedHeatmap:
    """Read one heatmap's map and facts (file names are kept inside ``folder``)."""
    try:
        facts_path = folder / Path(entry["facts"]).name
        facts = loads_bounded(facts_path.read_bytes(), what=facts_path.name)
        cam = read_image(folder / Path(entry["array"]).name)
        return SavedHeatmap(str(entry["name"]), cam, facts["metadata"], facts.get("display", {}))
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{folder}: a heatmap of the review cannot be read ({err})") from err


def load_session(folder: str | Path) -> Session:
    """Read a review saved by :func:`save_session`.

    Raises
    ------
    ValueError
        When the folder holds no review, or a file of it is missing or damaged.
    """
    folder = Path(folder)
    data = _read_index(folder)
    try:
        return _session(folder, data)
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{folder / SESSION_FILE} is damaged: {err!r} is not as saved") from err


def _session(folder: Path, data: dict[str, Any]) -> Session:
    image = data.get("image") or {}
    sample = image.get("sample")
    reference = ImageRef(
        str(image.get("name", "image")), image.get("path"), tuple(sample) if sample else None
    )
    heatmaps = [_read_heatmap(folder, entry) for entry in data.get("heatmaps", [])]
    annotations = read_geojson(folder / Path(data.get("annotations", ANNOTATIONS_FILE)).name)
    if annotations.skipped:
        raise ValueError(f"{folder}: damaged annotations: {'; '.join(annotations.skipped)}")
    return Session(
        reference,
        heatmaps,
        annotations.annotations,
        dict(data.get("labels", {})),
        str(data.get("annotations_name", "annotations")),
    )
