"""Slide embeddings: the encoder's output over the tissue tiles, cached by content and encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_gradcam.models.slide_model import SlideModel, load_slide_model
from napari_gradcam.slides.embedding_cache import file_fingerprint
from napari_gradcam.slides.embeddings import embed_tiles, slide_embeddings
from napari_gradcam.slides.synthetic import synthetic_slide
from tests.mil_cards import write_card


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> SlideModel:
    folder = tmp_path_factory.mktemp("card")
    write_card(folder / "card.json")
    return load_slide_model(folder / "card.json", device="cpu")


def test_embeddings_are_the_encoder_output_of_each_tissue_tile(
    model: SlideModel, tmp_path: Path
) -> None:
    slide = synthetic_slide(1024, mpp=0.5, tissue_share=0.3, seed=1)
    result = slide_embeddings(slide, model, cache_dir=tmp_path, batch_size=16)
    n = len(result.embeddings)
    assert 0 < n < (1024 // 64) ** 2  # background tiles are left out
    assert result.embeddings.shape == (n, 64) and not result.cached
    boxes = result.boxes.astype(int)
    assert np.all(boxes[:, 2:] - boxes[:, :2] == 64)  # level 0 at 0.5 µm/px: 64-pixel tiles
    picked = [0, n // 2, n - 1]
    tiles = np.stack(
        [np.asarray(slide.levels[0][y0:y1, x0:x1]) for y0, x0, y1, x1 in boxes[picked]]
    )
    direct = model.encoder.module(_normalised(model, tiles))
    np.testing.assert_allclose(result.embeddings[picked], direct.detach().numpy(), atol=1e-4)


def _normalised(model: SlideModel, tiles: np.ndarray) -> torch.Tensor:
    card = model.encoder.card
    x = torch.from_numpy(tiles).float().permute(0, 3, 1, 2) / 255.0
    return (x - torch.tensor(card.mean)[:, None, None]) / torch.tensor(card.std)[:, None, None]


def test_a_second_look_reads_the_cache(model: SlideModel, tmp_path: Path) -> None:
    slide = synthetic_slide(768, mpp=0.5, tissue_share=0.4, seed=2)
    first = slide_embeddings(slide, model, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    second = slide_embeddings(slide, model, cache_dir=tmp_path)
    assert second.cached and second.key == first.key
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    np.testing.assert_array_equal(second.boxes, first.boxes)
    other_tiling = slide_embeddings(slide, model, cache_dir=tmp_path, overlap=0.5)
    assert not other_tiling.cached and other_tiling.key != first.key
    other_slide = slide_embeddings(
        synthetic_slide(768, mpp=0.5, tissue_share=0.4, seed=3), model, cache_dir=tmp_path
    )
    assert not other_slide.cached


def test_file_fingerprint_follows_content_not_name(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(3 << 20)
    (tmp_path / "a.svs").write_bytes(data)
    (tmp_path / "b.svs").write_bytes(data)
    changed = bytearray(data)
    changed[-10] ^= 1  # the tail (headers, offsets) is always read
    (tmp_path / "c.svs").write_bytes(bytes(changed))
    assert file_fingerprint(tmp_path / "a.svs") == file_fingerprint(tmp_path / "b.svs")
    assert file_fingerprint(tmp_path / "a.svs") != file_fingerprint(tmp_path / "c.svs")


def test_refuses_a_slide_coarser_than_the_card(model: SlideModel, tmp_path: Path) -> None:
    slide = synthetic_slide(512, mpp=2.0, tissue_share=0.5)
    with pytest.raises(ValueError, match="coarser"):
        slide_embeddings(slide, model, cache_dir=tmp_path)


def test_embed_tiles_runs_without_gradients(model: SlideModel) -> None:
    tiles = np.full((2, 64, 64, 3), 200, np.uint8)
    out = embed_tiles(model.encoder, tiles, (0.0, 255.0))
    assert out.shape == (2, 64) and out.dtype == np.float32
    assert all(p.requires_grad for p in model.encoder.module.parameters())  # flags restored


def test_a_dask_worker_batch_equals_the_local_embeddings(model: SlideModel, tmp_path: Path) -> None:
    from napari_gradcam.slides.embeddings import EmbedTask, run_embed_task

    path = tmp_path / "card.json"  # workers load the card (its paths are absolute)
    path.write_text(json.dumps(model.source))
    slide = synthetic_slide(512, mpp=0.5, tissue_share=0.5, seed=4)
    local = slide_embeddings(slide, model, cache_dir=tmp_path / "cache")
    task = EmbedTask(
        slide, local.level, 1.0, local.grid.origins[:3], (64, 64), str(path), (0.0, 255.0)
    )
    np.testing.assert_allclose(run_embed_task(task), local.embeddings[:3], atol=1e-5)
