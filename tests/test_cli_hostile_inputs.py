"""``explain`` against hostile inputs: outputs that would replace inputs, hidden output names,
files that declare gigapixels, memory running out and bugs, each failing alone with advice."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_gradcam.cli import main
from napari_gradcam.data import read_he_region
from tests.hostile_files import write_declared_png, write_declared_tiff


@pytest.fixture
def tile() -> np.ndarray:
    return np.ascontiguousarray(read_he_region()[1000:1192, 600:760])


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(folder))
    monkeypatch.delenv("NAPARI_GRADCAM_MAX_PIXELS", raising=False)
    return folder


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_overwrite_never_replaces_an_input(tile, tmp_path: Path, capsys) -> None:
    # scan.overlay.png's own overlay used to be written over it ("scan" up to the first dot)
    source = tmp_path / "scan.overlay.png"
    iio.imwrite(source, tile)
    before = source.read_bytes()
    assert main(["explain", str(source), "--out", str(tmp_path), "--overwrite"]) == 0
    assert source.read_bytes() == before
    assert (tmp_path / "scan.overlay.overlay.png").exists()
    # scan.png's overlay is scan.overlay.png: an input, so the batch is refused whole
    plain = tmp_path / "scan.png"
    iio.imwrite(plain, tile)
    args = ["explain", str(plain), str(source), "--out", str(tmp_path), "--overwrite"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "would replace the input" in err and "--out" in err
    assert source.read_bytes() == before


def test_an_output_linked_to_an_input_is_refused(tile, tmp_path: Path, capsys) -> None:
    source = tmp_path / "in" / "tile.png"
    source.parent.mkdir()
    iio.imwrite(source, tile)
    out = tmp_path / "out"
    out.mkdir()
    os.link(source, out / "tile.overlay.png")  # a hard link: the same file under another name
    (out / "tile.json").symlink_to(source)
    before = source.read_bytes()
    assert main(["explain", str(source), "--out", str(out), "--overwrite"]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "stem"), [(".png", "image"), (".hidden.png", "hidden"), ("x.OME.TIF", "x")]
)
def test_output_names_are_never_hidden(tile, tmp_path: Path, name: str, stem: str) -> None:
    source = tmp_path / name
    if name.lower().endswith(".tif"):
        import tifffile

        tifffile.imwrite(source, tile)
    else:
        iio.imwrite(source, tile, extension=".png")
    out = tmp_path / "out"
    assert main(["explain", str(source), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"{stem}.cam.npy",
        f"{stem}.json",
        f"{stem}.overlay.png",
    ]


def test_a_declared_gigapixel_tiff_is_refused_before_reading(tmp_path: Path, capsys) -> None:
    huge = write_declared_tiff(tmp_path / "huge.tif", 40_000)
    assert huge.stat().st_size < 400_000
    before = peak_rss_mb()
    start = time.perf_counter()
    assert main(["explain", str(huge), "--out", str(tmp_path / "out")]) == 1
    assert time.perf_counter() - start < 30  # the model load included
    assert peak_rss_mb() - before < 500  # level 0 alone is 4.8 GB
    err = capsys.readouterr().err
    assert "40,000 x 40,000 pixels" in err
    assert "napari-gradcam slide" in err and "--max-pixels" in err
    assert "NAPARI_GRADCAM_MAX_PIXELS" in err


def test_a_batch_of_good_huge_good_explains_both_good_ones(tile, tmp_path: Path, capsys) -> None:
    first, last = tmp_path / "first.png", tmp_path / "last.png"
    iio.imwrite(first, tile)
    iio.imwrite(last, tile)
    huge = write_declared_tiff(tmp_path / "huge.tif", 40_000)
    out = tmp_path / "out"
    assert main(["explain", str(first), str(huge), str(last), "--out", str(out)]) == 1
    assert (out / "first.json").exists() and (out / "last.json").exists()
    assert not (out / "huge.json").exists()
    err = capsys.readouterr().err
    assert f"1 of 3 images failed: {huge}" in err


def test_the_cap_is_raised_by_flag_and_by_environment(tile, tmp_path, monkeypatch, capsys):
    source = tmp_path / "tile.png"
    iio.imwrite(source, tile)  # 192 x 160 = 30,720 pixels
    out = tmp_path / "out"
    assert main(["explain", str(source), "--out", str(out), "--max-pixels", "30000"]) == 1
    assert "over the limit of 30,000 pixels" in capsys.readouterr().err
    monkeypatch.setenv("NAPARI_GRADCAM_MAX_PIXELS", "30000")
    assert main(["explain", str(source), "--out", str(out)]) == 1
    assert main(["explain", str(source), "--out", str(out), "--max-pixels", "30_720"]) == 0
    monkeypatch.setenv("NAPARI_GRADCAM_MAX_PIXELS", "lots")
    assert main(["explain", str(source), "--out", str(out), "--overwrite"]) == 2
    assert "NAPARI_GRADCAM_MAX_PIXELS='lots': not a whole number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explain", str(source), "--out", str(out), "--max-pixels", "0"])
    assert "--max-pixels: the pixel count must be a positive number" in capsys.readouterr().err


def test_a_png_declaring_gigapixels_is_refused_from_its_header(tmp_path: Path, capsys) -> None:
    bomb = write_declared_png(tmp_path / "bomb.png", 30_000, 20_000)
    big = write_declared_png(tmp_path / "big.png", 9_000, 9_000)  # under Pillow's own limit
    out = tmp_path / "out"
    start = time.perf_counter()
    assert main(["explain", str(bomb), str(big), "--out", str(out)]) == 1
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "bomb.png" in err and "9,000 x 9,000 pixels" in err
    assert "2 of 2 images failed" in err


def test_running_out_of_memory_fails_one_image_only(tile, tmp_path, monkeypatch, capsys):
    import torch

    import napari_gradcam

    first, last = tmp_path / "first.png", tmp_path / "last.png"
    iio.imwrite(first, tile)
    iio.imwrite(last, tile[:, ::-1].copy())
    real = napari_gradcam.explain
    errors = iter([MemoryError(), torch.OutOfMemoryError("CUDA out of memory. Tried 9 GiB")])

    def failing(model, image, settings=None, **kwargs):
        error = next(errors, None)
        if error is not None:
            raise error
        return real(model, image, settings, **kwargs)

    monkeypatch.setattr(napari_gradcam.core.explain.pipeline, "explain", failing)
    args = ["explain", str(first), str(last), "--out", str(tmp_path / "out")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{first}: out of memory; explain a large image tile by tile" in err
    assert f"{last}: out of memory (CUDA out of memory. Tried 9 GiB)" in err
    assert "2 of 2 images failed" in err
    assert main([*args]) == 0  # nothing half-written was left to refuse


def test_a_bug_is_logged_with_its_traceback_and_the_batch_goes_on(
    tile, tmp_path, monkeypatch, capsys, state_dir
):
    import napari_gradcam.commands.explain as command

    first, last = tmp_path / "first.png", tmp_path / "last.png"
    iio.imwrite(first, tile)
    iio.imwrite(last, tile)
    real = command.describe
    calls = []

    def buggy(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return {}["no such key"]
        return real(*args, **kwargs)

    monkeypatch.setattr(command, "describe", buggy)
    out = tmp_path / "out"
    assert main(["explain", str(first), str(last), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    log = state_dir / "errors.log"
    assert f"unexpected error while processing {first}: KeyError" in err
    assert str(log) in err
    assert "Traceback" in log.read_text() and "no such key" in log.read_text()
    assert json.loads((out / "last.json").read_text())["class"]


def test_an_unexpected_error_outside_the_batch_names_the_log(tmp_path, monkeypatch, capsys):
    import napari_gradcam.commands.explain as command

    def broken(*args, **kwargs):
        raise RuntimeError("planning broke")

    monkeypatch.setattr(command, "plan_outputs", broken)
    source = tmp_path / "tile.png"
    iio.imwrite(source, np.zeros((8, 8), np.uint8))
    assert main(["explain", str(source), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unexpected error while running `napari-gradcam explain`: RuntimeError" in err
    assert "errors.log" in err
