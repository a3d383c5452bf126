"""The autosave file: atomic, keyed by the image's identity, read back whole."""

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from napari_gradcam import autosave as autosave_module
from napari_gradcam.autosave import (
    Autosave,
    autosave_dir,
    autosave_path,
    content_key,
    discard_autosave,
    file_key,
    read_autosave,
    sample_key,
    write_autosave,
)
from napari_gradcam.core.regions.geojson import Annotation
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.session import ImageRef


def square(y: float, x: float, size: float = 10.0) -> Polygon:
    return Polygon(np.array([[y, x], [y, x + size], [y + size, x + size], [y + size, x]]))


def record(count: int = 2, key: str = "k" * 32) -> Autosave:
    annotations = [
        Annotation((square(5.0 * i, 3.0),), "suspicious", (255, 0, 255), f"note {i}", {"mean": i})
        for i in range(count)
    ]
    return Autosave(
        key, ImageRef("tile", "/data/tile.tif"), annotations, {"suspicious": [255, 0, 255]}
    )


def test_an_autosave_reads_back_whole(tmp_path):
    saved = record()
    path = write_autosave(saved, tmp_path)
    assert path == autosave_path(saved.key, tmp_path)
    read = read_autosave(saved.key, tmp_path)
    assert [a.note for a in read.annotations] == ["note 0", "note 1"]
    assert [a.label for a in read.annotations] == ["suspicious"] * 2
    assert [a.id for a in read.annotations] == [a.id for a in saved.annotations]
    np.testing.assert_allclose(read.annotations[1].polygons[0].exterior, square(5.0, 3.0).exterior)
    assert read.image == saved.image and read.labels == saved.labels
    assert read.saved_at == saved.saved_at.replace(microsecond=0)


def test_a_failed_write_leaves_the_previous_autosave_and_no_temporary_file(tmp_path, monkeypatch):
    write_autosave(record(1), tmp_path)

    def crash(_source, _target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_autosave(record(3), tmp_path)
    assert len(read_autosave("k" * 32, tmp_path).annotations) == 1
    assert [p.name for p in tmp_path.iterdir()] == [f"{'k' * 32}.json"]


def test_the_file_is_complete_json_while_it_is_replaced(tmp_path, monkeypatch):
    """The new content is written to a temporary file first, never into the autosave."""
    write_autosave(record(1), tmp_path)
    seen: list[int] = []
    real_replace = os.replace

    def check(source, target):
        text = Path(target).read_text(encoding="utf-8")
        seen.append(len(json.loads(text)["annotations"]["features"]))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", check)
    write_autosave(record(4), tmp_path)
    assert seen == [1]
    assert len(read_autosave("k" * 32, tmp_path).annotations) == 4


def test_damaged_or_foreign_files_are_no_autosave(tmp_path):
    autosave_path("a" * 32, tmp_path).parent.mkdir(parents=True, exist_ok=True)
    autosave_path("a" * 32, tmp_path).write_text("{ half", encoding="utf-8")
    autosave_path("b" * 32, tmp_path).write_text('{"format": "other"}', encoding="utf-8")
    assert read_autosave("a" * 32, tmp_path) is None
    assert read_autosave("b" * 32, tmp_path) is None
    assert read_autosave("c" * 32, tmp_path) is None


def test_discard_removes_the_autosave(tmp_path):
    write_autosave(record(), tmp_path)
    discard_autosave("k" * 32, tmp_path)
    assert read_autosave("k" * 32, tmp_path) is None
    discard_autosave("k" * 32, tmp_path)


def test_keys_follow_the_image_identity(tmp_path):
    image = tmp_path / "tile.npy"
    image.write_bytes(b"pixels")
    first = file_key(image)
    assert file_key(tmp_path / "." / "tile.npy") == first
    os.utime(image, ns=(0, 10**9))
    assert file_key(image) != first
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert content_key(pixels) == content_key(pixels.copy())
    changed = pixels.copy()
    changed[3, 3, 2] += 1
    assert content_key(changed) != content_key(pixels)
    assert content_key(pixels.astype(np.uint16)) != content_key(pixels)
    assert sample_key("napari-gradcam", "he") != sample_key("napari-gradcam", "ihc")


def test_large_arrays_are_hashed_in_strides(monkeypatch):
    monkeypatch.setattr(autosave_module, "HASHED_BYTES", 64)
    pixels = np.zeros((100, 10), dtype=np.uint8)
    strided = pixels.copy()
    strided[1, 0] = 7  # rows 0, 16, 32, ... are hashed
    hashed = pixels.copy()
    hashed[16, 0] = 7
    assert content_key(strided) == content_key(pixels)
    assert content_key(hashed) != content_key(pixels)


def test_the_summary_names_count_and_time():
    saved = record(3)
    saved.saved_at = datetime.now().replace(hour=14, minute=5)
    assert saved.summary() == "Recover 3 annotations autosaved at 14:05"
    saved.saved_at -= timedelta(days=2)
    assert saved.summary().startswith("Recover 3 annotations autosaved at 20")


def test_the_folder_is_per_user_and_can_be_set(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_GRADCAM_AUTOSAVE_DIR", str(tmp_path))
    assert autosave_dir() == tmp_path
    monkeypatch.delenv("NAPARI_GRADCAM_AUTOSAVE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert autosave_dir() == tmp_path / "state" / "napari-gradcam" / "autosave"
