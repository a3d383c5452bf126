"""``napari-gradcam similarity``: the tile map, the tile CSV, drill-downs and the summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import napari_gradcam as ng
from napari_gradcam.cli import main
from napari_gradcam.data import HE_MPP, read_he_region
from napari_gradcam.models import cache
from napari_gradcam.slides.similarity_map import NO_TILE, SimilarityJob, similarity_slide_map
from tests.slides.tiny_vlm import TILE, tiny_vlm

SIDE = 480


@pytest.fixture
def he_slide(tmp_path: Path) -> Path:
    """A 480 px square of the CC0 slide at its microns per pixel (the tiny model's 0.5)."""
    pixels = np.ascontiguousarray(read_he_region()[768 : 768 + SIDE, 1088 : 1088 + SIDE])
    per_cm = {"resolution": (1e4 / HE_MPP, 1e4 / HE_MPP), "resolutionunit": "CENTIMETER"}
    path = tmp_path / "square.tif"
    tifffile.imwrite(path, pixels, tile=(128, 128), photometric="rgb", **per_cm)
    return path


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch):
    loaded, _ = tiny_vlm()
    monkeypatch.setattr(cache, "cached_model", lambda spec, weights=None, **_: loaded)
    return loaded


def test_a_prompt_writes_the_map_the_tile_scores_and_drill_downs(
    he_slide: Path, model, tmp_path: Path
) -> None:
    out, cache_dir = tmp_path / "out", tmp_path / "cache"
    command = ["similarity", str(he_slide), "--model", "tiny", "--prompt", "nuclei dense"]
    status = main([*command, "--out", str(out), "--cache", str(cache_dir), "--top-k", "3"])
    assert status == 0
    expected = ng.run_to_end(
        similarity_slide_map(
            ng.open_slide(he_slide),
            model,
            SimilarityJob(ng.Prompt(("nuclei dense",)), cache_dir=str(cache_dir)),
        )
    )
    assert expected.tiles.cached  # the command cached the embeddings
    with (out / "square.similarity.tiles.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(expected.scores) >= (SIDE // TILE) ** 2  # all tissue
    scores = np.array([float(row["similarity"]) for row in rows])
    np.testing.assert_allclose(scores, expected.scores, atol=1e-5)
    store = zarr.open_group(out / "square.similarity.zarr", mode="r")
    facts = store.attrs["napari_gradcam"]
    np.testing.assert_allclose(store["0"][:], expected.placed.cam)
    assert facts["target"] == "prompt 'nuclei dense'" and facts["no_tile"] == NO_TILE
    assert facts["stride"] == list(expected.placed.stride)
    summary = json.loads((out / "square.similarity.json").read_text())
    top = [record["tile"] for record in summary["drill_down"]]
    assert top == expected.top(3)
    assert sorted(p.name for p in (out / "square.similarity.drill").iterdir()) == [
        f"{rank:02d}_tile{tile}.png" for rank, tile in enumerate(top)
    ]


def test_like_a_region_finds_that_tile_first(he_slide: Path, model, tmp_path: Path) -> None:
    out = tmp_path / "out"
    box = "192,128,64,64"  # one tile of the grid: x, y, w, h
    command = ["similarity", str(he_slide), "--model", "tiny", "--like-region", box]
    assert main([*command, "--out", str(out), "--cache", str(tmp_path / "c")]) == 0
    summary = json.loads((out / "square.similarity.json").read_text())
    assert summary["target"].startswith("like 'square.tif")
    with (out / "square.similarity.tiles.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    (that,) = [int(r["tile"]) for r in rows if (r["y0"], r["x0"]) == ("128.0", "192.0")]
    assert summary["drill_down"][0]["tile"] == that
    assert summary["similarity"]["max"] == pytest.approx(1.0, abs=1e-5)


def test_refuses_what_no_run_can_use(he_slide: Path, model, tmp_path: Path, capsys) -> None:
    command = ["similarity", str(he_slide), "--model", "tiny", "--out", str(tmp_path)]
    assert main([*command, "--prompt", "x", "--overlap", "1"]) == 2
    assert "--overlap" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a prompt or a region, not both
        main([*command, "--prompt", "x", "--like-region", "0,0,64,64"])
    assert main([*command, "--like-region", "0,0,64"]) == 2
    assert "x,y,w,h" in capsys.readouterr().err  # neither a box nor a file
