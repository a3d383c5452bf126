"""The methods' option flags (``--discard-ratio``, ``--attention-head``, ...) in ``explain`` and
``slide``."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import zarr

import napari_gradcam as ng
from napari_gradcam.cli import build_parser, main
from napari_gradcam.commands.method_args import explain_settings
from napari_gradcam.core.explain.method_options import option_specs
from napari_gradcam.core.explain.methods import METHODS
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.data import HE_SLIDE_PATH, read_he_region

COARSE = ["--mpp", "2.0", "--batch-size", "48", "--model", "demo-vit"]


@pytest.fixture
def tile_png(tmp_path: Path) -> Path:
    path = tmp_path / "tile.png"
    iio.imwrite(path, np.ascontiguousarray(read_he_region()[1000:1096, 600:696]))
    return path


@pytest.mark.parametrize(
    ("method", "flags", "options", "facts"),
    [
        ("rollout", ["--discard-ratio", "0.5"], ng.RolloutOptions(0.5), {"discard_ratio": 0.5}),
        ("attention", ["--attention-head", "2"], ng.AttentionOptions(2), {"attention_head": 2}),
        ("legrad", ["--legrad-blocks", "3"], ng.LegradOptions(3), {"legrad_blocks": 3}),
    ],
)
def test_explain_passes_the_option_and_records_it(
    tile_png, tmp_path, method, flags, options, facts
):
    out = tmp_path / "out"
    args = ["explain", str(tile_png), "--out", str(out), "--model", "demo-vit"]
    assert main([*args, "--method", method, *flags, "--trust"]) == 0
    record = json.loads((out / "tile.json").read_text())
    assert {key: record[key] for key in facts} == facts
    loaded = ng.load_model("demo-vit")
    expected = ng.explain(loaded, iio.imread(tile_png), method=method, options=options)
    np.testing.assert_allclose(np.load(out / "tile.cam.npy"), expected.cam, rtol=1e-5, atol=1e-8)
    assert record["trust"]["method"] == method


def test_an_option_the_method_does_not_take_is_refused(tile_png, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["explain", str(tile_png), "--out", str(out), "--model", "demo-vit"]
    assert main([*args, "--discard-ratio", "0.5"]) == 2
    assert "--discard-ratio applies to method rollout only" in capsys.readouterr().err
    assert main([*args, "--method", "rollout", "--attention-head", "1"]) == 2
    assert "--attention-head applies to method attention only" in capsys.readouterr().err
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


def option_cases() -> list[tuple[str, str, str, object]]:
    """(method, field, flag, a value other than the default) for every option of every method."""
    cases = []
    for method in METHODS.values():
        default = method.options()
        for name, spec in option_specs(method.options):
            if spec.choices:
                value = next(c for c in spec.choices if c != getattr(default, name))
            else:
                value = spec.kind(spec.maximum if spec.maximum is not None else 3)
            cases.append((method.name, name, f"--{spec.key.replace('_', '-')}", value))
    return cases


@pytest.mark.parametrize(("method", "name", "flag", "value"), option_cases())
@pytest.mark.parametrize("command", ["explain", "slide"])
def test_every_option_has_its_flag_and_round_trips(command, method, name, flag, value) -> None:
    args = build_parser().parse_args(
        [command, "x.png", "--out", "out", "--method", method, flag, str(value)]
    )
    settings = explain_settings(args, None)
    assert getattr(settings.options, name) == value
    assert ExplainSettings.from_metadata(settings.to_metadata()) == settings
    other = "gradcam" if method != "gradcam" else "rollout"
    refused = build_parser().parse_args(
        [command, "x.png", "--out", "out", "--method", other, flag, str(value)]
    )
    with pytest.raises(ValueError, match=f"applies to method {method}"):
        explain_settings(refused, None)
