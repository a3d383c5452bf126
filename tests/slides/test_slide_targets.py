"""Targets over a whole slide, read at level 1: each tile's score is the direct one of its pixels
and its crop of the region, which lines up with the tile at that level."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import napari_gradcam.models.cache
import napari_gradcam.slides.batches
import napari_gradcam.slides.runner
from napari_gradcam.cli import main
from napari_gradcam.core.explain.preprocess import to_batch
from tests.slides.slide_files import write_svs
from tests.target_models import MODELS, SIZE, toy_text

LEVEL_1 = ["--level", "1", "--all-tiles", "--overlap", "0", "--batch-size", "16"]
"""Level 1 (2x), every tile, side by side: tile k's level-0 box is 2x its level-1 pixels."""


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("slide") / "s.svs"
    return path, write_svs(path)


@pytest.fixture
def models(monkeypatch):
    built = {spec: make() for spec, make in MODELS.items()}

    def cached(spec, weights=None, **_):
        return built[spec]

    monkeypatch.setattr(napari_gradcam.models.cache, "cached_model", cached)
    monkeypatch.setattr(napari_gradcam.slides.runner, "cached_model", cached)
    monkeypatch.setattr(napari_gradcam.slides.batches, "cached_model", cached)
    return built


def run_slide(slide_path, out, model: str, *flags: str) -> tuple[dict, list[dict]]:
    assert main(["slide", str(slide_path), "--model", model, "--out", str(out), *flags]) == 0
    (summary,) = out.glob("*.json")
    (tiles,) = out.glob("*.tiles.csv")
    with tiles.open() as handle:
        return json.loads(summary.read_text()), list(csv.DictReader(handle))


def tile_pixels(level1: np.ndarray, row: dict) -> np.ndarray:
    """A tile's pixels read straight from level 1, at half its level-0 box."""
    y, x = round(float(row["y0"])) // 2, round(float(row["x0"])) // 2
    return level1[y : y + SIZE, x : x + SIZE]


def output_of(loaded, pixels: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return loaded.module(to_batch(pixels, loaded.card, torch.device("cpu")))[0]


def test_an_output_region_over_a_slide_is_cropped_per_tile_at_level_1(slide, models, tmp_path):
    path, levels = slide
    flags = ["--output-region", "nuclei", "--region", "210,130,300,200", *LEVEL_1]
    summary, rows = run_slide(path, tmp_path, "toy-seg", *flags)
    mask = np.zeros(levels[0].shape[:2], bool)
    mask[130:330, 210:510] = True
    explained = [row for row in rows if row["status"] == "explained"]
    outside = [row for row in rows if row["status"] == "outside region"]
    assert summary["tiles"]["outside_region"] == len(outside) > 0
    assert summary["tiles"]["explained"] == len(explained) > 0
    assert summary["heatmap"]["target_description"] == "nuclei in 'box 210,130,300,200'"
    assert summary["job"]["settings"]["target"]["mask_pixels"] == 300 * 200
    for row in explained:
        y, x = round(float(row["y0"])), round(float(row["x0"]))
        # each tile pixel takes the level-0 pixel under its centre: 2 * (its level-1 pixel) + 1
        crop = mask[y + 1 : y + 2 * SIZE : 2, x + 1 : x + 2 * SIZE : 2]
        share = crop.reshape(SIZE // 4, 4, SIZE // 4, 4).mean(axis=(1, 3))
        dense = output_of(models["toy-seg"], tile_pixels(levels[1], row))[1].numpy()
        assert float(row["score"]) == pytest.approx(float((dense * share).sum()), rel=1e-4)
        assert row["target"] == "nuclei in 'box 210,130,300,200'"
    for row in outside:
        y, x = round(float(row["y0"])), round(float(row["x0"]))
        assert not mask[y + 1 : y + 2 * SIZE : 2, x + 1 : x + 2 * SIZE : 2].any()
    assert (tmp_path / "s.region-nuclei-box-210-130-300-200.tiles.csv").is_file()


def test_a_prompt_scores_each_tile_by_its_similarity(slide, models, tmp_path):
    path, levels = slide
    summary, rows = run_slide(path, tmp_path, "toy-vl", "--prompt", "dense nuclei", *LEVEL_1)
    text = F.normalize(toy_text(["an image of dense nuclei"])[0], dim=0)
    explained = [row for row in rows if row["status"] == "explained"]
    assert len(explained) == summary["tiles"]["total"]
    for row in explained[::7]:
        embedding = output_of(models["toy-vl"], tile_pixels(levels[1], row))
        expected = float(F.cosine_similarity(embedding, text, dim=0))
        assert float(row["score"]) == pytest.approx(expected, abs=1e-4)
        assert row["target"] == "prompt 'dense nuclei'" and row["class"] == ""
        assert row["class_index"] == row["target_index"] == "-1" and row["probability"] == "nan"
    prompt = {"kind": "prompt", "texts": ["dense nuclei"], "template": None}
    assert summary["heatmap"]["target"] == prompt


def test_like_a_region_of_the_slide_finds_that_very_tile(slide, models, tmp_path):
    path, _ = slide
    flags = ["--like-region", "64,64,64,64", *LEVEL_1]
    _, rows = run_slide(path, tmp_path, "toy-vl", *flags)
    scores = {(row["y0"], row["x0"]): float(row["score"]) for row in rows}
    # level-0 box 64..128 is the level-1 tile at (32, 32): its similarity to itself is 1
    assert scores[("64.0", "64.0")] == pytest.approx(1.0, abs=1e-5)
    assert max(scores.values()) == scores[("64.0", "64.0")]


def test_a_cluster_gives_each_batch_its_tiles_crops(slide, models, tmp_path):
    from distributed import LocalCluster

    path, _ = slide
    flags = ["--output-region", "nuclei", "--region", "210,130,300,200", *LEVEL_1]
    _, local = run_slide(path, tmp_path / "local", "toy-seg", *flags)
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        scheduler = ["--scheduler", cluster.scheduler_address]
        _, remote = run_slide(path, tmp_path / "remote", "toy-seg", *flags, *scheduler)
    assert [row["status"] for row in remote] == [row["status"] for row in local]
    scores = [
        (float(ours["score"]), float(theirs["score"]))
        for ours, theirs in zip(remote, local, strict=True)
        if ours["status"] == "explained"
    ]
    assert scores and all(ours == pytest.approx(theirs) for ours, theirs in scores)
