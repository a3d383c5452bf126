"""A prompt or "like this region" over a whole slide: tile scores, placement, cache, drill-down."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.targets import LikeEmbedding, Prompt
from napari_gradcam.slides.similarity_map import (
    NO_TILE,
    SimilarityJob,
    drill_down_tile,
    region_target,
    similarity_slide_map,
)
from tests.slides.tiny_vlm import MPP, TILE, tiny_vlm

PROMPT = Prompt(("nuclei dense tissue",))


def slide_at(mpp: float, size: int = 512):
    return ng.synthetic_slide(size, mpp=mpp, tissue_share=0.4, chunk=128, seed=3)


def run_map(slide, model, target=PROMPT, cache: Path | None = None, **options):
    job = SimilarityJob(target, cache_dir=None if cache is None else str(cache), **options)
    return ng.run_to_end(similarity_slide_map(slide, model, job))


def direct_embeddings(model, slide, result) -> np.ndarray:
    """The tower's output on each tile, read and normalised here, not by the package."""
    level = result.tiles.level
    down = slide.downsamples[level]
    tiles = []
    for y0, x0, y1, x1 in result.tiles.boxes.astype(int):
        box = (int(y0 / down[0]), int(x0 / down[1]), int(y1 / down[0]), int(x1 / down[1]))
        tiles.append(np.asarray(slide.read_region(level, box)))
    x = torch.from_numpy(np.stack(tiles)).float().permute(0, 3, 1, 2) / 255.0
    card = model.card
    x = (x - torch.tensor(card.mean)[:, None, None]) / torch.tensor(card.std)[:, None, None]
    with torch.no_grad():
        return model.module(x).numpy()


def test_tile_scores_are_the_cosine_of_the_tile_and_text_embeddings(tmp_path: Path) -> None:
    model, words = tiny_vlm()
    slide = slide_at(MPP)
    result = run_map(slide, model, Prompt(("nuclei dense tissue", "many nuclei")), tmp_path)
    images = direct_embeddings(model, slide, result)
    texts = words(["nuclei dense tissue", "many nuclei"]).numpy()
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    direction = texts.mean(axis=0) / np.linalg.norm(texts.mean(axis=0))
    cosine = images @ direction / np.linalg.norm(images, axis=1)
    assert 4 < len(result.scores) < (512 // TILE) ** 2  # tissue tiles only
    np.testing.assert_allclose(result.scores, cosine, atol=1e-5)
    assert result.label == "prompt 'nuclei dense tissue; many nuclei'"


@pytest.mark.parametrize(("slide_mpp", "level"), [(MPP, 0), (MPP / 2, 1)])
def test_the_map_covers_its_tiles_at_level_0_and_coarser(
    tmp_path: Path, slide_mpp: float, level: int
) -> None:
    model, _ = tiny_vlm()
    slide = slide_at(slide_mpp, size=512 if level == 0 else 1024)
    result = run_map(slide, model, cache=tmp_path)
    assert result.tiles.level == level
    placed, boxes = result.placed, result.tiles.boxes
    tile_level0 = TILE * 2**level
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], tile_level0)
    stride, origin = np.asarray(placed.stride), np.asarray(placed.origin)
    for index in (0, len(boxes) // 2, len(boxes) - 1):
        y0, x0, y1, x1 = boxes[index]
        first = np.floor((np.array([y0, x0]) - origin) / stride).astype(int)
        last = np.ceil((np.array([y1, x1]) - origin) / stride).astype(int)
        cells = placed.cam[first[0] : last[0], first[1] : last[1]]
        assert cells.size and np.allclose(cells, result.scores[index])  # its cells, exactly
    covered = placed.cam != NO_TILE
    assert covered.sum() * np.prod(stride) == pytest.approx(len(boxes) * tile_level0**2)
    low, high = result.limits()
    assert low < result.scores.min() and high == pytest.approx(result.scores.max())
    assert low > NO_TILE


def test_embeddings_are_cached_per_model_weights_and_text_per_prompt(tmp_path: Path) -> None:
    model, words = tiny_vlm(seed=0)
    slide = slide_at(MPP)
    first = run_map(slide, model, cache=tmp_path)
    assert not first.tiles.cached and len(words.calls) == 1
    again = run_map(slide, model, Prompt(("stroma",)), cache=tmp_path)
    assert again.tiles.cached and again.tiles.key == first.tiles.key  # a new prompt: no re-embed
    run_map(slide, model, cache=tmp_path)
    assert len(words.calls) == 2, "the first prompt's text embedding is cached"
    templated = run_map(slide, model, Prompt(PROMPT.texts, "an image of {}"), cache=tmp_path)
    assert len(words.calls) == 3 and not np.allclose(templated.direction, first.direction)
    with torch.no_grad():
        model.module.head.bias += 1.0  # retrained in place: same spec, card and code
    retrained = run_map(slide, model, cache=tmp_path)
    assert not retrained.tiles.cached and retrained.tiles.key != first.tiles.key
    other, _ = tiny_vlm(seed=1)
    assert run_map(slide, other, cache=tmp_path).tiles.key not in {
        first.tiles.key,
        retrained.tiles.key,
    }


def test_like_a_region_ranks_that_region_s_tile_first(tmp_path: Path) -> None:
    model, _ = tiny_vlm()
    slide = slide_at(MPP)
    probe = run_map(slide, model, cache=tmp_path)
    box = tuple(float(v) for v in probe.tiles.boxes[len(probe.scores) // 2])
    target = region_target(slide, model, box, "tile")
    assert isinstance(target, LikeEmbedding) and target.label == "tile"
    result = run_map(slide, model, target, cache=tmp_path)
    assert result.top(1) == [len(probe.scores) // 2]
    assert result.scores.max() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="not a box"):
        region_target(slide, model, (10.0, 10.0, 5.0, 20.0))


def test_the_drill_down_is_the_tile_s_grad_cam_placed_on_its_pixels(tmp_path: Path) -> None:
    model, _ = tiny_vlm()
    slide = slide_at(MPP / 2, size=1024)  # read at level 1: tile pixels are 2 level-0 pixels
    result = run_map(slide, model, cache=tmp_path)
    index = result.top(1)[0]
    drill = drill_down_tile(result, index)
    y0, x0, y1, x1 = result.tiles.boxes[index]
    placed = drill.placed
    assert placed.origin == (y0, x0)
    np.testing.assert_allclose(np.asarray(placed.stride) * placed.cam.shape, (y1 - y0, x1 - x0))
    direct = ng.explain(model, drill.pixels, target=PROMPT)
    np.testing.assert_allclose(placed.cam, direct.cam, rtol=1e-4, atol=1e-6)
    level1 = np.asarray(slide.read_region(1, tuple(int(v) // 2 for v in (y0, x0, y1, x1))))
    np.testing.assert_array_equal(drill.pixels, level1)


def test_a_prompt_needs_a_text_tower_and_an_embedding_model(tmp_path: Path) -> None:
    model, _ = tiny_vlm()
    with pytest.raises(ValueError, match="text tower"):
        run_map(slide_at(MPP), replace(model, text=None), cache=tmp_path)
    classifier = replace(model, card=replace(model.card, output="classes"))
    with pytest.raises(ValueError, match="output"):
        run_map(slide_at(MPP), classifier, cache=tmp_path)
