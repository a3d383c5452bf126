"""Durable atomic writes (fsync of the file and its folder) and strict JSON outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.core import output_files
from napari_gradcam.core.output_files import atomic_write, json_text, save_json


def strict_loads(text: str) -> object:
    """Parse JSON the way strict readers do: bare NaN / Infinity are errors."""

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(handle: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{handle}")))
        real_fsync(handle)

    def replace(source: str, target: str) -> None:
        events.append(("replace", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(output_files.os, "fsync", fsync)
    monkeypatch.setattr(output_files.os, "replace", replace)
    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: tmp.write_text("complete"))
    assert target.read_text() == "complete"
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).name.startswith(".out.txt.")  # the temporary file, flushed
    assert events[2][1] == str(tmp_path)  # the folder, after the rename


def test_json_text_writes_non_finite_numbers_as_null_and_numpy_as_plain() -> None:
    data = {
        "score": float("nan"),
        "high": np.float32(np.inf),
        "low": -np.inf,
        "row": np.array([1.5, np.nan]),
        "count": np.int64(3),
        "nested": [{"p": np.float64(0.25)}, (np.nan,)],
    }
    parsed = strict_loads(json_text(data))
    assert parsed == {
        "score": None,
        "high": None,
        "low": None,
        "row": [1.5, None],
        "count": 3,
        "nested": [{"p": 0.25}, [None]],
    }


def test_save_json_never_writes_bare_nan(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    save_json(path, {"probability": float("nan"), "label": "tumour"})
    text = path.read_text()
    assert "NaN" not in text and text.endswith("\n")
    assert strict_loads(text) == {"probability": None, "label": "tumour"}


def test_the_heatmap_store_writes_strict_json_attributes(tmp_path: Path) -> None:
    from napari_gradcam.slides.outputs import HeatmapStore

    store = HeatmapStore(tmp_path / "map.zarr", (4, 4))
    placement = {"pixel": {"scale": [2.0, 2.0], "translate": [0.5, 0.5]}}
    store.publish({"slide": "s", "method": "gradcam", "placement": placement, "max": np.nan})
    text = (tmp_path / "map.zarr" / "zarr.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["attributes"]["napari_gradcam"]["max"] is None


def test_a_folder_output_is_flushed_before_it_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_gradcam.slides import outputs

    flushed: list[str] = []
    real_fsync = os.fsync

    def fsync(handle: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{handle}"))
        real_fsync(handle)

    monkeypatch.setattr(output_files.os, "fsync", fsync)
    source = tmp_path / ".store.tmp"
    (source / "0").mkdir(parents=True)
    (source / "0" / "c0").write_bytes(b"chunk")
    (source / "zarr.json").write_text("{}")
    outputs.replace_folder(source, tmp_path / "store.zarr", overwrite=False)
    assert (tmp_path / "store.zarr" / "0" / "c0").read_bytes() == b"chunk"
    assert {Path(p).name for p in flushed} >= {"c0", "zarr.json", "0", ".store.tmp"}
