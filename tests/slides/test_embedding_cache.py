"""The embedding cache serves only what the same inputs would compute, and survives crashes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_gradcam.core.explain.finite import NonFiniteError
from napari_gradcam.models.slide_model import SlideModel, load_slide_model
from napari_gradcam.slides import embedding_cache
from napari_gradcam.slides.embedding_cache import file_fingerprint
from napari_gradcam.slides.embeddings import slide_embeddings
from napari_gradcam.slides.synthetic import synthetic_slide

ROOT = Path(__file__).parents[2]
ENCODER = """
import torch
from torch import nn


def build():
    torch.manual_seed({seed})
    return nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""


def project(folder: Path, seed: int = 0, std: float = 0.2) -> Path:
    """A project folder with ``enc.py:build`` (seeded), its card and a slide-model card."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "enc.py").write_text(ENCODER.format(seed=seed))
    (folder / "enc.json").write_text(json.dumps({"std": [std] * 3, "mean": [0.5] * 3}))
    card = {
        "classes": ["neg", "pos"],
        "tile_size": 32,
        "mpp": 0.5,
        "encoder": {"spec": "enc.py:build", "card": "enc.json"},
        "aggregator": {
            "spec": "napari_gradcam.core.mil.aggregators:build_attention_mil",
            "kwargs": {"in_dim": 8, "n_classes": 2},
        },
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder / "card.json"


def slide(seed: int = 0):
    return synthetic_slide(256, mpp=0.5, tissue_share=0.5, seed=seed)


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SlideModel:
    card = project(tmp_path / "a")
    return load_slide_model(card, device="cpu", trust_code=True)


def only_entry(folder: Path) -> Path:
    (entry,) = folder.glob("*.npz")
    return entry


def test_two_encoders_with_the_same_spec_in_two_folders_get_two_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # neither project: each card's enc.py is read from its folder
    cache = tmp_path / "cache"
    results = []
    for seed in (0, 1):
        folder = tmp_path / f"project{seed}"
        card = project(folder, seed=seed)
        results.append(
            slide_embeddings(slide(), load_slide_model(card, trust_code=True), cache_dir=cache)
        )
    first, second = results
    assert not second.cached and second.key != first.key
    assert not np.allclose(first.embeddings, second.embeddings)


def test_an_edited_encoder_card_computes_anew(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = slide_embeddings(
        slide(), load_slide_model(project(tmp_path, std=0.2), trust_code=True), cache_dir=cache
    )
    again = slide_embeddings(
        slide(), load_slide_model(project(tmp_path, std=0.2), trust_code=True), cache_dir=cache
    )
    assert again.cached and again.key == first.key
    edited = slide_embeddings(
        slide(), load_slide_model(project(tmp_path, std=0.3), trust_code=True), cache_dir=cache
    )
    assert not edited.cached and edited.key != first.key


def test_other_encoder_weights_compute_anew(tmp_path: Path, model: SlideModel) -> None:
    cache = tmp_path / "cache"
    first = slide_embeddings(slide(), model, cache_dir=cache)
    weights = tmp_path / "a" / "enc.pt"
    torch.save({k: v + 1 for k, v in model.encoder.module.state_dict().items()}, weights)
    data = json.loads((tmp_path / "a" / "card.json").read_text())
    data["encoder"]["weights"] = "enc.pt"
    (tmp_path / "a" / "card.json").write_text(json.dumps(data))
    retrained = load_slide_model(tmp_path / "a" / "card.json", trust_code=True)
    second = slide_embeddings(slide(), retrained, cache_dir=cache)
    assert not second.cached and second.key != first.key


def corrupt(entry: Path, how: str) -> None:
    data = entry.read_bytes()
    if how == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        entry.write_bytes(b"")
    elif how == "bit-flipped":
        flipped = bytearray(data)
        for at in range(len(flipped) // 4, len(flipped) // 4 * 3, 97):
            flipped[at] ^= 0x55
        entry.write_bytes(bytes(flipped))
    elif how == "not an archive":
        entry.write_text("garbage")
    else:
        with np.load(entry) as archive:
            arrays = {name: archive[name] for name in archive.files}
        if how == "missing array":
            del arrays["tissue"]
        elif how == "NaN embeddings":
            arrays["embeddings"][1, 2] = np.nan
        elif how == "fewer rows than tiles":
            arrays["embeddings"] = arrays["embeddings"][:-1]
        elif how == "another width":
            arrays["embeddings"] = np.zeros((len(arrays["origins"]), 5), np.float32)
        elif how == "another key":
            arrays["key"] = np.asarray("0" * 32)
        np.savez(entry, **arrays)


CORRUPTIONS = [
    "truncated",
    "empty",
    "bit-flipped",
    "not an archive",
    "missing array",
    "NaN embeddings",
    "fewer rows than tiles",
    "another width",
    "another key",
]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_an_unusable_entry_is_a_logged_miss_and_is_replaced(
    how: str, tmp_path: Path, model: SlideModel, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    first = slide_embeddings(slide(), model, cache_dir=cache)
    corrupt(only_entry(cache), how)
    with caplog.at_level(logging.WARNING, logger=embedding_cache.__name__):
        second = slide_embeddings(slide(), model, cache_dir=cache)
    assert not second.cached
    assert "computing them anew" in caplog.text
    np.testing.assert_allclose(second.embeddings, first.embeddings)
    third = slide_embeddings(slide(), model, cache_dir=cache)  # the entry was replaced
    assert third.cached
    np.testing.assert_allclose(third.embeddings, first.embeddings)


def test_nan_embeddings_raise_and_are_not_cached(tmp_path: Path, model: SlideModel) -> None:
    with torch.no_grad():
        model.encoder.module[0].weight[0, 0, 0, 0] = float("nan")
    cache = tmp_path / "cache"
    with pytest.raises(NonFiniteError, match=r"embeddings hold NaN .* weights hold NaN/inf"):
        slide_embeddings(slide(), model, cache_dir=cache)
    assert not list(cache.glob("*.npz"))


def test_a_small_file_is_hashed_whole(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(3 << 20)
    changed = bytearray(data)
    changed[(3 << 20) // 2 + 12345] ^= 1  # in no sampled block
    (tmp_path / "a.svs").write_bytes(data)
    (tmp_path / "b.svs").write_bytes(bytes(changed))
    assert file_fingerprint(tmp_path / "a.svs") != file_fingerprint(tmp_path / "b.svs")


def test_a_big_tiff_is_keyed_by_its_tile_structure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedding_cache, "WHOLE_FILE_BYTES", 0)  # every file counts as big
    monkeypatch.setattr(embedding_cache, "BLOCKS", 0)
    monkeypatch.setattr(embedding_cache, "EDGE_BYTES", 16)  # (nearly) no sampled bytes
    image = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    paths = {}
    for name, value in (("a", 0), ("b", 0), ("c", 7)):
        pixels = image.copy()
        pixels[100:140, 100:140] = value  # c re-encodes one middle tile
        paths[name] = tmp_path / f"{name}.tif"
        tifffile.imwrite(paths[name], pixels, tile=(64, 64), compression="zlib")
    keys = {name: file_fingerprint(path) for name, path in paths.items()}
    assert keys["a"] == keys["b"] and keys["a"] != keys["c"]


CHILD = """
import signal, sys, time
from pathlib import Path

import numpy as np

from napari_gradcam.models.slide_model import load_slide_model
from napari_gradcam.slides import embedding_cache
from napari_gradcam.slides.embeddings import slide_embeddings
from napari_gradcam.slides.synthetic import synthetic_slide

cache, card, marker = (Path(a) for a in sys.argv[1:4])
model = load_slide_model(card, device="cpu", trust_code=True)
slide_embeddings(synthetic_slide(256, mpp=0.5, tissue_share=0.5, seed=1), model, cache_dir=cache)


def torn_savez(file, **arrays):
    Path(file).write_bytes(b"PK\\x03\\x04 half of an entry")
    marker.write_text("writing")
    time.sleep(600)


embedding_cache.np.savez = torn_savez
slide_embeddings(synthetic_slide(256, mpp=0.5, tissue_share=0.5, seed=0), model, cache_dir=cache)
"""


@pytest.mark.slow  # a run in a subprocess, killed
def test_a_run_killed_while_writing_an_entry_loses_only_that_entry(
    tmp_path: Path, model: SlideModel
) -> None:
    cache, marker = tmp_path / "cache", tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(cache), str(tmp_path / "a" / "card.json"), str(marker)],
        cwd=tmp_path / "a",
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the child never reached the cache write"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    entries = sorted(cache.glob("*.npz"))
    torn = [path for path in entries if path.name.startswith(".")]  # a temporary file
    assert len(entries) == 2 and len(torn) == 1
    os.utime(torn[0], (0, 0))  # as if left by a run killed long ago
    finished = slide_embeddings(slide(seed=1), model, cache_dir=cache)
    assert finished.cached  # nothing finished was lost
    recovered = slide_embeddings(slide(seed=0), model, cache_dir=cache)
    assert not recovered.cached and np.isfinite(recovered.embeddings).all()
    assert slide_embeddings(slide(seed=0), model, cache_dir=cache).cached
    assert not torn[0].exists()  # the killed run's temporary was cleared by the rewrite


def test_an_aggregator_with_nan_weights_gives_no_slide_scores(model: SlideModel) -> None:
    from napari_gradcam.slides.mil_scores import score_tiles

    with torch.no_grad():
        next(model.aggregator.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"slide model's logits hold NaN .* weights hold"):
        score_tiles(model, np.ones((4, 8), np.float32))


def test_a_dask_worker_reloads_an_encoder_retrained_into_the_same_file(
    tmp_path: Path, model: SlideModel
) -> None:
    from napari_gradcam.slides.embeddings import EmbedTask, run_embed_task

    folder = tmp_path / "a"
    weights = folder / "enc.pt"
    state = model.encoder.module.state_dict()
    torch.save(state, weights)
    data = json.loads((folder / "card.json").read_text())
    data["encoder"]["weights"] = "enc.pt"
    (folder / "card.json").write_text(json.dumps(data))
    origins = np.array([[0, 0], [32, 32]])
    card = str(folder / "card.json")
    assert model.trust_code  # loaded with trust_code=True: its workers may load the card again
    task = EmbedTask(slide(), 0, 1.0, origins, (32, 32), card, (0.0, 255.0), model.trust_code)
    before = run_embed_task(task)
    torch.save({name: value * 2 for name, value in state.items()}, weights)
    os.utime(weights, ns=(1, 1))
    assert not np.allclose(run_embed_task(task), before)


def test_an_in_memory_slide_is_keyed_by_its_full_resolution_pixels() -> None:
    from napari_gradcam.slides.embedding_cache import slide_fingerprint
    from napari_gradcam.slides.lazy_slide import Slide

    pixels = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    edited = pixels.copy()
    edited[100, 100] ^= 1  # too small to change a coarser level
    keys = []
    for level0 in (pixels, pixels.copy(), edited):
        levels = [level0, level0[::2, ::2].copy()]
        levels[1][:] = pixels[::2, ::2]  # the same coarse level for all three
        memory = Slide(tuple(levels), ((1.0, 1.0), (2.0, 2.0)), 0.5, "given", "in memory")
        keys.append(slide_fingerprint(memory))
    assert keys[0] == keys[1] != keys[2]
