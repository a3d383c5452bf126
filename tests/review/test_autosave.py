"""The autosave file: atomic, keyed by the image's identity, read back whole."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.core.regions import geojson
from napari_gradcam.core.regions.geojson import Annotation
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.review import autosave as autosave_module
from napari_gradcam.review.autosave import (
    Autosave,
    AutosaveSetAside,
    autosave_dir,
    autosave_path,
    autosave_paths,
    content_key,
    discard_autosave,
    file_key,
    new_writer_id,
    read_autosave,
    read_stamp,
    sample_key,
    set_aside,
    write_autosave,
)
from napari_gradcam.review.session import ImageRef


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


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{ half", "not valid JSON"),
        ('{"format": "other"}', "not a napari-gradcam autosave"),
        ('{"format": "napari-gradcam autosave", "version": 9}', "newer napari-gradcam"),
        ('{"format": "napari-gradcam autosave", "version": 1}', "it has no 'image'"),
        ("[" * 200 + "]" * 200, "200 deep"),
    ],
)
def test_an_unreadable_autosave_is_set_aside_with_a_timestamp_never_deleted(tmp_path, text, reason):
    key = "a" * 32
    autosave_path(key, tmp_path).write_text(text, encoding="utf-8")
    with pytest.raises(AutosaveSetAside, match=reason) as raised:
        read_autosave(key, tmp_path)
    moved = raised.value.moved_to
    assert moved.name.startswith(f"{key}.unreadable-") and moved.read_text() == text
    assert moved.name in str(raised.value) and not autosave_path(key, tmp_path).exists()
    assert read_autosave(key, tmp_path) is None
    autosave_path(key, tmp_path).write_text(text, encoding="utf-8")
    with pytest.raises(AutosaveSetAside) as again:
        read_autosave(key, tmp_path)
    assert again.value.moved_to != moved and moved.read_text() == text


def test_more_features_than_the_reader_takes_is_set_aside(tmp_path, monkeypatch):
    write_autosave(record(3), tmp_path)
    monkeypatch.setattr(geojson, "MAX_FEATURES", 2)
    with pytest.raises(AutosaveSetAside, match="3 features is more than the 2"):
        read_autosave("k" * 32, tmp_path)


def test_a_partial_read_says_how_many_of_how_many(tmp_path):
    path = write_autosave(record(50), tmp_path)
    data = json.loads(path.read_text())
    data["annotations"]["features"][7]["geometry"] = {"type": "Circle"}
    path.write_text(json.dumps(data))
    read = read_autosave("k" * 32, tmp_path)
    assert len(read.annotations) == 49 and read.total == 50
    assert read.skipped == ["feature 7 skipped: its geometry type 'Circle' is not GeoJSON"]
    assert read.summary().startswith("Recover 49 of 50 annotations autosaved at ")
    assert read.summary().endswith("(1 could not be read)")
    assert path.exists()


def test_the_stamp_names_writer_and_revision(tmp_path):
    saved = record()
    saved.writer, saved.revision = new_writer_id(), 7
    path = write_autosave(saved, tmp_path)
    assert read_stamp(path) == (saved.writer, 7)
    assert read_autosave(saved.key, tmp_path).stamp == (saved.writer, 7)
    own = write_autosave(saved, tmp_path, autosave_path(saved.key, tmp_path, saved.writer))
    assert autosave_paths(saved.key, tmp_path) == [path, own]
    set_aside(own, "partial")
    assert autosave_paths(saved.key, tmp_path) == [path]
    legacy = json.loads(path.read_text())
    del legacy["writer"], legacy["revision"]
    path.write_text(json.dumps(legacy))
    assert read_stamp(path) == ("", 0)
    path.write_text("{ half")
    assert read_stamp(path) is None and read_stamp(tmp_path / "none.json") is None


WRITER = """
import sys
from pathlib import Path
from tests.review.test_autosave import record
from napari_gradcam.review.autosave import write_autosave
print("ready", flush=True)
count = 0
while True:
    count += 1
    write_autosave(record(count % 400 + 1), Path(sys.argv[1]))
"""


@pytest.mark.slow  # three writer subprocesses, killed
def test_sigkill_in_the_middle_of_writes_leaves_the_last_complete_autosave(tmp_path):
    root = Path(__file__).resolve().parents[2]
    for delay in (0.3, 0.55, 0.8):
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.PIPE,
        )
        assert process.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        read = read_autosave("k" * 32, tmp_path)
        count = len(read.annotations)
        assert count >= 1 and read.skipped == []
        assert [a.note for a in read.annotations] == [f"note {i}" for i in range(count)]
        others = {p.name for p in tmp_path.iterdir()} - {autosave_path("k" * 32).name}
        assert all(name.startswith(".") for name in others)  # a temporary cut short, hidden


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
    monkeypatch.delenv("NAPARI_GRADCAM_STATE_DIR")  # set for every test by conftest
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert autosave_dir() == tmp_path / "state" / "napari-gradcam" / "autosave"
