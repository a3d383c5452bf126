"""``napari-gradcam slide --mil``: scores, placed maps, tables, drill-downs, safe outputs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.data import HE_SLIDE_PATH
from tests.mil_cards import write_card

pytestmark = pytest.mark.slow  # runs the slide-level model over the CC0 slide (about 20 s)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("mil")
    write_card(folder / "card.json", tile_size=96, mpp=0.499)
    command = [
        sys.executable,
        "-m",
        "napari_gradcam.cli",
        "slide",
        str(HE_SLIDE_PATH),
        "--mil",
        str(folder / "card.json"),
        "--out",
        str(folder / "out"),
        "--cache",
        str(folder / "cache"),
        "--top-k",
        "2",
        "--target",
        "pos",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    return folder, folder / "out", done


def test_writes_scores_maps_and_drill_downs(run: tuple) -> None:
    _folder, out, done = run
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "CMU-1-Small-Region.mil.json").read_text())
    assert summary["target"] == "pos" and summary["tiles"] > 100
    assert summary["ig_completeness_error"] <= 0.01
    assert set(summary["faithfulness"]) == {"attention", "grad_x_embedding", "integrated_gradients"}
    with (out / "CMU-1-Small-Region.mil.tiles.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["tiles"]
    attention = np.array([float(r["attention"]) for r in rows])
    assert attention.sum() == pytest.approx(1.0, abs=1e-3)  # a softmax over the tiles
    geojson = json.loads((out / "CMU-1-Small-Region.mil.tiles.geojson").read_text())
    first = geojson["features"][0]
    assert first["properties"]["objectType"] == "tile"
    assert first["properties"]["measurements"]["grad_x_embedding"] == pytest.approx(
        float(rows[0]["grad_x_embedding"]), rel=1e-4
    )
    drills = sorted(p.name for p in (out / "CMU-1-Small-Region.mil.drill").iterdir())
    assert drills and all(name.endswith(".png") for name in drills)
    assert [d["file"] for d in summary["drill_down"]] == drills


def test_maps_are_placed_on_their_tiles(run: tuple) -> None:
    import zarr

    from napari_gradcam._napari.reader import read_heatmap

    _folder, out, _done = run
    with (out / "CMU-1-Small-Region.mil.tiles.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    path = out / "CMU-1-Small-Region.mil.grad_x_embedding.zarr"
    painted = zarr.open_group(path, mode="r")["0"][:]
    (_data, kwargs, _kind) = read_heatmap(str(path))[0]
    assert kwargs["colormap"].name == "BrBG (clear zero)"  # signed: diverging, as the dock
    low, high = kwargs["contrast_limits"]
    assert low == -high
    scale, translate = kwargs["scale"], kwargs["translate"]  # µm; the slide's mpp is 0.499
    for row in rows[:: max(1, len(rows) // 10)]:
        centre = np.array([float(row["y0"]) + 48, float(row["x0"]) + 48]) * 0.499
        cell = np.floor((centre - np.array(translate)) / np.array(scale) + 0.5).astype(int)
        assert painted[tuple(cell)] == pytest.approx(float(row["grad_x_embedding"]), rel=1e-4)


def test_refuses_to_overwrite(run: tuple) -> None:
    folder, out, _done = run
    command = [
        sys.executable,
        "-m",
        "napari_gradcam.cli",
        "slide",
        str(HE_SLIDE_PATH),
        "--mil",
        str(folder / "card.json"),
        "--out",
        str(out),
    ]
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0
    assert "exist" in again.stderr or "overwrite" in again.stderr
