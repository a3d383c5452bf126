"""A `slide` run SIGKILLed while writing its outputs: nothing finished is lost or torn."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pytest

from napari_gradcam.cli import main
from napari_gradcam.data import HE_SLIDE_PATH

ROOT = Path(__file__).parents[2]
COARSE = ["--mpp", "2.0", "--batch-size", "48"]

CHILD = """
import sys, time
from pathlib import Path

from napari_gradcam.core import output_files
from napari_gradcam.cli import main
from napari_gradcam.slides import runner

marker = Path(sys.argv[1])
real_save_png = runner.save_png


def save_png(path, rgb):
    if not path.name.startswith("second"):
        return real_save_png(path, rgb)

    def torn(temporary):
        temporary.write_bytes(b"\\x89PNG half an overlay")
        marker.write_text("writing")
        time.sleep(600)

    output_files.atomic_write(path, torn)


runner.save_png = save_png
sys.exit(main(sys.argv[2:]))
"""


def strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"bare {name} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def complete(out: Path, stem: str) -> dict:
    """Check one slide's outputs are all there and whole; return its summary."""
    summary = strict_json(out / f"{stem}.json")
    with (out / f"{stem}.tiles.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["tiles"]["total"]
    assert iio.imread(out / f"{stem}.overlay.png").ndim == 3
    assert strict_json(out / f"{stem}.tiles.geojson")["type"] == "FeatureCollection"
    assert (out / f"{stem}.heatmap.zarr").is_dir()
    return summary


@pytest.mark.slow  # a slide run in a subprocess, killed
def test_a_slide_run_killed_while_writing_outputs_loses_nothing_finished(tmp_path: Path) -> None:
    slides = [tmp_path / "first.svs", tmp_path / "second.svs"]
    for path in slides:
        shutil.copy(HE_SLIDE_PATH, path)
    out, marker = tmp_path / "out", tmp_path / "marker"
    args = ["slide", *map(str, slides), "--out", str(out), *COARSE]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the child never reached the second overlay"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()

    first = complete(out, "first")  # finished before the kill: whole
    assert not (out / "second.overlay.png").exists()  # killed mid-write: no torn file
    assert not (out / "second.json").exists()
    first_rows = (out / "first.tiles.csv").read_text()

    assert main([*args, "--overwrite"]) == 0  # the next run completes both
    assert complete(out, "first")["tiles"] == first["tiles"]
    assert (out / "first.tiles.csv").read_text() == first_rows
    complete(out, "second")
