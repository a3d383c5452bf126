"""``slide`` against files that declare terapixels: refused within seconds, in little memory,
with advice, while the other slides of the batch are explained."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from napari_gradcam.cli import main
from napari_gradcam.data import HE_SLIDE_PATH
from tests.hostile_files import write_declared_pyramid, write_declared_tiff

COARSE = ["--mpp", "2.0", "--batch-size", "48"]


@pytest.fixture(autouse=True)
def no_cap_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAPARI_GRADCAM_MAX_PIXELS", raising=False)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.slow  # explains the whole CC0 slide after the refusal
def test_a_terapixel_level_without_a_pyramid_is_refused_and_the_batch_goes_on(tmp_path, capsys):
    huge = write_declared_tiff(tmp_path / "huge.tif", 1_000_000, tile=4096)
    assert huge.stat().st_size < 2_000_000
    out = tmp_path / "out"
    before = peak_rss_mb()
    start = time.perf_counter()
    assert main(["slide", str(huge), str(HE_SLIDE_PATH), "--out", str(out), *COARSE]) == 1
    assert time.perf_counter() - start < 90  # includes explaining the CC0 slide
    assert peak_rss_mb() - before < 1000
    err = capsys.readouterr().err
    assert "huge.tif's coarsest level (0), read whole for an overview, is 1,000,000 x" in err
    assert "vips tiffsave" in err and "--max-pixels" in err
    assert "1 of 2 slides failed" in err
    assert (out / "CMU-1-Small-Region.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(("huge", "."))]


def test_a_terapixel_pyramid_is_refused_by_its_tile_count_before_planning(tmp_path, capsys):
    huge = write_declared_pyramid(tmp_path / "pyramid.tif", 1_000_000, 1_954)
    out = tmp_path / "out"
    before = peak_rss_mb()
    start = time.perf_counter()
    assert main(["slide", str(huge), "--out", str(out)]) == 1
    assert time.perf_counter() - start < 30
    assert peak_rss_mb() - before < 500  # planning 434 million tiles ran out of memory
    err = capsys.readouterr().err
    assert "pyramid.tif would be cut into about 433,972,224 tiles at level 0" in err
    assert "--mpp or --level" in err
    assert not out.exists() or not list(out.iterdir())


def test_the_cap_is_lowered_and_raised_by_the_flag(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["slide", str(HE_SLIDE_PATH), "--out", str(out), *COARSE]
    assert main([*args, "--max-pixels", "100000"]) == 1  # the CC0 slide has no small level
    assert "over the limit of 100,000 pixels" in capsys.readouterr().err
    assert main([*args, "--max-pixels", "7,000,000"]) == 0


def test_overwrite_never_replaces_the_slide(tmp_path, capsys):
    slide = tmp_path / "scan.svs"
    slide.write_bytes(HE_SLIDE_PATH.read_bytes())
    os.link(slide, tmp_path / "scan.json")  # the summary's name, linked to the input
    before = slide.stat().st_size
    args = ["slide", str(slide), "--out", str(tmp_path), "--overwrite", *COARSE]
    assert main(args) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert slide.stat().st_size == before


@pytest.mark.parametrize(("name", "stem"), [(".svs", "slide"), ("a.b.OME.TIF", "a.b")])
def test_slide_output_names_are_never_hidden(name: str, stem: str) -> None:
    from napari_gradcam.slides.mil_outputs import MilOutputs
    from napari_gradcam.slides.outputs import SlideOutputs

    names = [p.name for p in SlideOutputs.for_slide(Path("in") / name, Path("o")).paths()]
    assert names[0] == f"{stem}.heatmap.zarr"
    assert all(n.startswith(f"{stem}.") for n in names)
    assert MilOutputs.for_slide(Path("in") / name, Path("o")).stem == stem


def test_the_flag_caps_a_slide_model_run_too(tmp_path):
    import subprocess
    import sys

    from tests.mil_cards import write_card

    write_card(tmp_path / "card.json", tile_size=96, mpp=0.499)
    card, out, cache = (str(tmp_path / name) for name in ("card.json", "out", "cache"))
    command = [sys.executable, "-m", "napari_gradcam.cli", "slide", str(HE_SLIDE_PATH)]
    command += ["--mil", card, "--out", out, "--cache", cache, "--max-pixels", "100000"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "over the limit of 100,000 pixels" in done.stderr
    assert "1 of 1 slides failed" in done.stderr
