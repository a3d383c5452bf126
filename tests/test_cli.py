"""The headless face: napari-gradcam explain writes a map, an overlay and a JSON per image."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_gradcam.cli import main
from napari_gradcam.data import read_he_region

SPEC = "tests.architectures:ResNetLike"


@pytest.fixture
def tile_png(tmp_path: Path) -> Path:
    path = tmp_path / "tile.png"
    iio.imwrite(path, np.ascontiguousarray(read_he_region()[1000:1192, 600:760]))
    return path


def test_explain_writes_three_files_per_image(tile_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["explain", str(tile_png), "--out", str(out), "--format", "tif"]) == 0
    record = json.loads((out / "tile.json").read_text())
    assert record["model"]["spec"] == "demo"
    assert record["class"] in ("background", "stroma", "nuclei-dense")
    assert 0 < record["probability"] <= 1
    assert record["placement"]["stride"] == [8.0, 8.0]
    assert record["placement"]["napari_translate"] == [3.5, 3.5]
    assert record["map_shape"] == [24, 20]
    overlay = iio.imread(out / "tile.overlay.png")
    assert overlay.shape == (192, 160, 3)
    import tifffile

    assert tifffile.imread(out / "tile.cam.tif").shape == (24, 20)
    assert not list(out.glob(".*")), "temporary files left behind"


def test_target_layer_and_npy(tile_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["explain", str(tile_png), "--out", str(out), "--target", "stroma"]
    assert main([*args, "--layer", "features.10"]) == 0
    record = json.loads((out / "tile.json").read_text())
    assert record["class"] == "stroma"
    assert record["layer"] == "features.10"
    assert np.load(out / "tile.cam.npy").shape == tuple(record["map_shape"])


@pytest.mark.parametrize("method", ["gradcam", "rollout"])
def test_vit_demo_model(tile_png: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / "out"
    args = ["explain", str(tile_png), "--out", str(out), "--model", "demo-vit"]
    assert main([*args, "--method", method]) == 0
    record = json.loads((out / "tile.json").read_text())
    assert record["model"]["spec"] == "demo-vit"
    assert record["placement"]["stride"] == [8.0, 8.0]
    assert record["map_shape"] == [24, 20]  # 192 x 160 px in 8 px patches
    assert record["layer"].startswith("blocks.")


def test_existing_outputs_are_not_overwritten(tile_png: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "tile.json").write_text("keep me")
    assert main(["explain", str(tile_png), "--out", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (out / "tile.json").read_text() == "keep me"
    assert main(["explain", str(tile_png), "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "tile.json").read_text())["class"]


def test_same_stem_twice_is_refused(tile_png: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "b"
    other.mkdir()
    twin = other / "tile.png"
    twin.write_bytes(tile_png.read_bytes())
    assert main(["explain", str(tile_png), str(twin), "--out", str(tmp_path / "o")]) == 2
    assert "same outputs" in capsys.readouterr().err


def test_bad_image_is_reported_and_others_still_run(tile_png: Path, tmp_path: Path, capsys) -> None:
    blank = tmp_path / "blank.png"
    iio.imwrite(blank, np.full((128, 128, 3), 240, np.uint8))
    out = tmp_path / "out"
    assert main(["explain", str(blank), str(tile_png), "--out", str(out)]) == 1
    assert "constant" in capsys.readouterr().err
    assert (out / "tile.json").exists()
    assert not (out / "blank.json").exists()


def test_bad_model_spec(tile_png: Path, tmp_path: Path, capsys) -> None:
    code = main(["explain", str(tile_png), "--out", str(tmp_path), "--model", "nope.pt"])
    assert code == 2
    assert "no model file" in capsys.readouterr().err


def test_user_model_from_module_spec(tmp_path: Path) -> None:
    image = tmp_path / "x.npy"
    np.save(image, np.random.default_rng(0).random((64, 48, 3)).astype(np.float32))
    assert main(["explain", str(image), "--model", SPEC, "--out", str(tmp_path / "o")]) == 0
    record = json.loads((tmp_path / "o" / "x.json").read_text())
    assert record["layer"] == "layer3"
    assert record["class"] == str(record["class_index"])


def test_help_lists_methods(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "gradcam" in capsys.readouterr().out


@pytest.mark.gui  # a napari window in a subprocess, on pytest-xvfb's display
def test_demo_command_saves_a_screenshot_headless(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    path = tmp_path / "window.png"
    command = [sys.executable, "-m", "napari_gradcam.cli", "demo", "--sample", "ihc"]
    result = subprocess.run(
        [*command, "--screenshot", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),  # pytest-xvfb's DISPLAY
    )
    assert result.returncode == 0, result.stderr[-2000:]
    window = iio.imread(path)
    assert window.shape[0] > 400 and window.shape[1] > 600
    assert len(np.unique(window.reshape(-1, window.shape[-1]), axis=0)) > 100


def test_tta_flag_averages_over_flips(tile_png: Path, tmp_path: Path) -> None:
    import napari_gradcam as ng

    out = tmp_path / "out"
    args = ["explain", str(tile_png), "--out", str(out), "--target", "stroma"]
    assert main([*args, "--tta", "--method", "layercam"]) == 0
    expected = ng.explain(
        ng.load_model("demo"), iio.imread(tile_png), method="layercam", target="stroma", tta=True
    )
    np.testing.assert_allclose(np.load(out / "tile.cam.npy"), expected.cam, rtol=1e-5, atol=1e-7)
    assert json.loads((out / "tile.json").read_text())["tta"] is True


@pytest.mark.slow  # Score-CAM twice on a full tile (about 6 s)
def test_bf16_flag_runs_scorecam_close_to_the_exact_map(tile_png: Path, tmp_path: Path) -> None:
    args = ["explain", str(tile_png), "--target", "stroma", "--method", "scorecam"]
    assert main([*args, "--out", str(tmp_path / "exact")]) == 0
    assert main([*args, "--out", str(tmp_path / "bf16"), "--bf16"]) == 0
    exact = np.load(tmp_path / "exact" / "tile.cam.npy")
    rounded = np.load(tmp_path / "bf16" / "tile.cam.npy")
    assert exact.max() > 0 and not np.array_equal(rounded, exact)
    np.testing.assert_allclose(rounded / exact.max(), exact / exact.max(), atol=0.05)
    assert json.loads((tmp_path / "bf16" / "tile.json").read_text())["bfloat16"] is True
    assert json.loads((tmp_path / "exact" / "tile.json").read_text())["bfloat16"] is False


def test_bf16_flag_is_refused_for_gradient_methods(tile_png: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["explain", str(tile_png), "--out", str(out), "--bf16"]) == 2
    assert "turn bfloat16 off" in capsys.readouterr().err and not out.exists()
