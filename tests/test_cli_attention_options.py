"""``--discard-ratio`` and ``--attention-head`` in ``explain`` and ``slide``."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import zarr

import napari_gradcam as ng
from napari_gradcam.cli import main
from napari_gradcam.data import HE_SLIDE_PATH, read_he_region

COARSE = ["--mpp", "2.0", "--batch-size", "48", "--model", "demo-vit"]


@pytest.fixture
def tile_png(tmp_path: Path) -> Path:
    path = tmp_path / "tile.png"
    iio.imwrite(path, np.ascontiguousarray(read_he_region()[1000:1096, 600:696]))
    return path


@pytest.mark.parametrize(
    ("method", "flags", "kwargs"),
    [
        ("rollout", ["--discard-ratio", "0.5"], {"discard_ratio": 0.5}),
        ("attention", ["--attention-head", "2"], {"attention_head": 2}),
    ],
)
def test_explain_passes_the_option_and_records_it(tile_png, tmp_path, method, flags, kwargs):
    out = tmp_path / "out"
    args = ["explain", str(tile_png), "--out", str(out), "--model", "demo-vit"]
    assert main([*args, "--method", method, *flags, "--trust"]) == 0
    record = json.loads((out / "tile.json").read_text())
    assert {key: record[key] for key in kwargs} == kwargs
    expected = ng.explain(ng.load_model("demo-vit"), iio.imread(tile_png), method=method, **kwargs)
    np.testing.assert_allclose(np.load(out / "tile.cam.npy"), expected.cam, rtol=1e-5, atol=1e-8)
    assert record["trust"]["method"] == method


def test_an_option_the_method_does_not_take_is_refused(tile_png, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["explain", str(tile_png), "--out", str(out), "--model", "demo-vit"]
    assert main([*args, "--discard-ratio", "0.5"]) == 2
    assert "discard_ratio applies to method rollout only" in capsys.readouterr().err
    assert main([*args, "--method", "rollout", "--attention-head", "1"]) == 2
    assert "attention_head applies to method attention only" in capsys.readouterr().err
    assert not out.exists()
    slide = ["slide", str(HE_SLIDE_PATH), "--out", str(out), *COARSE, "--attention-head", "0"]
    assert main(slide) == 2 and "applies to method attention only" in capsys.readouterr().err


def test_slide_rollout_takes_the_discard_ratio(tmp_path) -> None:
    maps = {}
    for ratio in ("0", "0.9"):
        out = tmp_path / ratio
        args = ["slide", str(HE_SLIDE_PATH), "--out", str(out), *COARSE, "--method", "rollout"]
        assert main([*args, "--discard-ratio", ratio]) == 0
        stem = out / "CMU-1-Small-Region"
        summary = json.loads(stem.with_suffix(".json").read_text())
        assert summary["heatmap"].get("discard_ratio", 0.0) == float(ratio)
        maps[ratio] = np.asarray(zarr.open_group(str(stem.with_suffix(".heatmap.zarr")))["0"])
    assert maps["0"].shape == maps["0.9"].shape
    assert not np.allclose(maps["0"], maps["0.9"], rtol=0.01)
