import csv
import json
import shutil

import numpy as np
import pytest
import tifffile
import zarr

from napari_gradcam.cli import main
from napari_gradcam.data import HE_SLIDE_PATH

COARSE = ["--mpp", "2.0", "--batch-size", "48"]
"""The CC0 slide at 2 µm/px: about 165 tiles, a few seconds."""


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory):
    """The CC0 slide explained once at a coarse setting (local threads)."""
    out = tmp_path_factory.mktemp("slide")
    assert main(["slide", str(HE_SLIDE_PATH), "--out", str(out), *COARSE]) == 0
    return out


def outputs(out):
    stem = out / "CMU-1-Small-Region"
    return {
        "heatmap": stem.with_suffix(".heatmap.zarr"),
        "tiles": stem.with_suffix(".tiles.csv"),
        "overlay": stem.with_suffix(".overlay.png"),
        "summary": stem.with_suffix(".json"),
        "qupath": stem.with_suffix(".tiles.geojson"),
    }


def world_box(scale, translate, shape) -> np.ndarray:
    """(top-left, bottom-right) world edges of a layer of ``shape`` cells."""
    scale, translate = np.asarray(scale), np.asarray(translate)
    return np.array([translate - scale / 2, translate + scale * (np.asarray(shape) - 0.5)])


def test_outputs_are_complete_and_consistent(slide_dir):
    paths = outputs(slide_dir)
    summary = json.loads(paths["summary"].read_text())
    with paths["tiles"].open() as handle:
        rows = list(csv.DictReader(handle))
    tiles = summary["tiles"]
    assert len(rows) == tiles["total"] == tiles["explained"] + tiles["skipped"]
    explained = [row for row in rows if row["status"] == "explained"]
    assert len(explained) == tiles["explained"] > 0
    assert [int(row["tile"]) for row in rows] == list(range(len(rows)))
    assert all(float(row["tissue_fraction"]) >= 0.1 for row in explained)
    assert all(row["class"] in ("background", "stroma", "nuclei-dense") for row in explained)
    assert all(0 <= float(row["margin"]) <= float(row["probability"]) <= 1 for row in explained)
    assert all(0 <= float(row["entropy"]) <= 1 for row in explained)
    overlay = paths["overlay"].read_bytes()
    assert overlay[:4] == b"\x89PNG"
    assert not [p.name for p in slide_dir.iterdir() if p.name.startswith(".")]


def test_the_explained_tiles_open_in_qupath_with_their_numbers(slide_dir):
    paths = outputs(slide_dir)
    with paths["tiles"].open() as handle:
        explained = [row for row in csv.DictReader(handle) if row["status"] == "explained"]
    text = paths["qupath"].read_text(encoding="utf-8")
    features = json.loads(text, parse_constant=lambda token: 1 / 0)["features"]  # strict JSON
    assert len(features) == len(explained)
    for row, feature in zip(explained, features, strict=True):
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        box = [float(row[k]) for k in ("x0", "y0", "x1", "y1")]
        np.testing.assert_allclose([*ring.min(axis=0), *ring.max(axis=0)], box)
        properties = feature["properties"]
        assert properties["objectType"] == "tile"
        assert properties["classification"]["name"] == row["class"]
        measured = properties["measurements"]
        for name in ("probability", "entropy", "energy", "roughness", "tissue_fraction"):
            assert measured[name] == pytest.approx(float(row[name]))
    assert json.loads(paths["summary"].read_text())["outputs"]["qupath"] == paths["qupath"].name


def test_the_heatmap_reopens_on_the_slide(slide_dir):
    from napari_gradcam._napari.reader import get_slide_reader

    ((image_data, image_kwargs, _),) = get_slide_reader(str(HE_SLIDE_PATH))(str(HE_SLIDE_PATH))
    heatmap_path = str(outputs(slide_dir)["heatmap"])
    ((levels, kwargs, kind),) = get_slide_reader(heatmap_path)(heatmap_path)
    facts = kwargs["metadata"]["napari_gradcam"]
    assert kind == "image" and kwargs["units"] == ("micrometer", "micrometer")
    cam = np.asarray(levels[0] if kwargs["multiscale"] else levels)
    stride = np.asarray(facts["stride"])  # level-0 pixels per cell: 96 px tiles at 2 µm/px
    assert stride[0] == pytest.approx(8 * 2.0 / 0.499)
    heat = world_box(kwargs["scale"], kwargs["translate"], cam.shape)
    image = world_box(image_kwargs["scale"], (0, 0), image_data.shape[:2])
    covered = image[0] + np.asarray(image_kwargs["scale"]) * stride * np.asarray(cam.shape)
    np.testing.assert_allclose(heat[0], image[0])
    np.testing.assert_allclose(heat[1], covered)
    assert np.all(image[1] - heat[1] < stride * 0.499)  # at most one cell short of the edge
    assert kwargs["contrast_limits"] == (0.0, pytest.approx(float(cam.max())))


def test_outputs_are_never_silently_overwritten(slide_dir, capsys, tmp_path):
    before = outputs(slide_dir)["tiles"].stat().st_mtime_ns
    assert main(["slide", str(HE_SLIDE_PATH), "--out", str(slide_dir), *COARSE]) == 2
    assert "already exist" in capsys.readouterr().err
    assert outputs(slide_dir)["tiles"].stat().st_mtime_ns == before
    shutil.copy(outputs(slide_dir)["qupath"], tmp_path)  # the QuPath tiles alone
    assert main(["slide", str(HE_SLIDE_PATH), "--out", str(tmp_path), *COARSE]) == 2
    assert [p.name for p in tmp_path.iterdir()] == [outputs(slide_dir)["qupath"].name]


def test_overwrite_replaces_and_a_local_cluster_gives_the_same_map(slide_dir, tmp_path):
    from distributed import LocalCluster

    copy = tmp_path / "copy"
    shutil.copytree(slide_dir, copy)
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        args = ["slide", str(HE_SLIDE_PATH), "--out", str(copy), *COARSE, "--overwrite"]
        assert main([*args, "--scheduler", cluster.scheduler_address]) == 0
    local = zarr.open_group(outputs(slide_dir)["heatmap"], mode="r")
    remote = zarr.open_group(outputs(copy)["heatmap"], mode="r")
    np.testing.assert_allclose(
        np.asarray(remote["0"]), np.asarray(local["0"]), rtol=1e-5, atol=1e-7
    )
    assert outputs(copy)["tiles"].read_text() == outputs(slide_dir)["tiles"].read_text()
    assert not [p.name for p in copy.iterdir() if p.name.startswith(".")]


def test_bad_slides_fail_alone_and_write_nothing(tmp_path, capsys):
    truncated = tmp_path / "truncated.svs"
    truncated.write_bytes(HE_SLIDE_PATH.read_bytes()[:500_000])
    out = tmp_path / "out"
    assert main(["slide", str(truncated), "--out", str(out), *COARSE]) == 1
    assert "truncated" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


def test_an_interrupted_run_leaves_nothing_behind(tmp_path):
    from napari_gradcam.core.progress import run_to_end
    from napari_gradcam.slides import open_slide
    from napari_gradcam.slides.outputs import SlideOutputs
    from napari_gradcam.slides.runner import SlideJob, explain_slide

    def interrupt(progress) -> None:
        if progress.step:
            raise KeyboardInterrupt

    outputs = SlideOutputs.for_slide(HE_SLIDE_PATH, tmp_path)
    run = explain_slide(open_slide(HE_SLIDE_PATH), SlideJob(mpp=4.0), outputs)
    with pytest.raises(KeyboardInterrupt):
        run_to_end(run, interrupt)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from napari_gradcam.commands import slide

    monkeypatch.setattr(slide, "CONNECT_TIMEOUT", "1s")
    args = ["slide", str(HE_SLIDE_PATH), "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"]
    assert main(args) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def test_a_slide_without_mpp_is_read_at_the_models_mpp_and_says_so(tmp_path, capsys):
    pixels = np.asarray(zarr.open(tifffile.imread(HE_SLIDE_PATH, aszarr=True), mode="r")[::4, ::4])
    tifffile.imwrite(tmp_path / "nompp.tif", pixels, tile=(128, 128), photometric="rgb")
    assert main(["slide", str(tmp_path / "nompp.tif"), "--out", str(tmp_path / "out")]) == 0
    assert "no microns per pixel" in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "nompp.json").read_text())
    assert summary["heatmap"]["mpp"] is None and "micrometer" not in summary["heatmap"]["placement"]


def test_tta_is_applied_to_every_tile_and_recorded(slide_dir, tmp_path):
    out = tmp_path / "tta"
    assert main(["slide", str(HE_SLIDE_PATH), "--out", str(out), *COARSE, "--tta"]) == 0
    with_tta, plain = outputs(out), outputs(slide_dir)
    summary = json.loads(with_tta["summary"].read_text())
    assert summary["heatmap"]["tta"] is True
    assert json.loads(plain["summary"].read_text())["heatmap"]["tta"] is False
    flipped = np.asarray(zarr.open_group(str(with_tta["heatmap"]), mode="r")["0"])
    unflipped = np.asarray(zarr.open_group(str(plain["heatmap"]), mode="r")["0"])
    assert flipped.shape == unflipped.shape
    tiles = json.loads(plain["summary"].read_text())["tiles"]
    assert summary["tiles"] == tiles  # the same tissue tiles
    assert not np.allclose(flipped, unflipped, rtol=0.01)


def test_the_heatmap_carries_ome_ngff_multiscales(slide_dir):
    group = zarr.open_group(str(outputs(slide_dir)["heatmap"]), mode="r")
    ome = group.attrs["ome"]
    (multiscale,) = ome["multiscales"]
    assert ome["version"] == "0.5"
    assert [axis["unit"] for axis in multiscale["axes"]] == ["micrometer", "micrometer"]
    assert [d["path"] for d in multiscale["datasets"]] == sorted(group.array_keys(), key=int)
    scale, translation = multiscale["datasets"][0]["coordinateTransformations"]
    placement = group.attrs["napari_gradcam"]["placement"]["micrometer"]
    np.testing.assert_allclose(scale["scale"], placement["scale"])
    np.testing.assert_allclose(translation["translation"], placement["translate"])


KEYS = ("scale", "translation")


def test_coarser_ngff_levels_sit_on_the_cells_they_average(tmp_path):
    from napari_gradcam.slides.outputs import HeatmapStore

    store = HeatmapStore(tmp_path / "map.zarr", (1100, 1030))
    store.level0[:] = np.random.default_rng(0).random((1100, 1030), dtype=np.float32)
    pixels = {"scale": [8.0, 8.0], "translate": [3.5, 3.5]}
    shapes = store.publish({"placement": {"pixel": pixels}, "slide": "s", "method": "gradcam"})
    group = zarr.open_group(str(tmp_path / "map.zarr"), mode="r")
    (multiscale,) = group.attrs["ome"]["multiscales"]
    datasets = multiscale["datasets"]
    assert len(datasets) == len(shapes) >= 3 and "unit" not in multiscale["axes"][0]
    level0 = np.asarray(group["0"])
    for level, dataset in enumerate(datasets):
        transforms = zip(dataset["coordinateTransformations"], KEYS, strict=True)
        scale, translation = (transform[key] for transform, key in transforms)
        factor = 2**level
        np.testing.assert_allclose(scale, [8.0 * factor] * 2)
        # the world centre of its first cell is that of the level-0 cells it averages
        np.testing.assert_allclose(translation, [3.5 + 8.0 * (factor - 1) / 2] * 2)
        first = np.asarray(group[str(level)])[0, 0]
        np.testing.assert_allclose(first, level0[:factor, :factor].mean(), rtol=1e-4)


@pytest.mark.slow  # Score-CAM over the whole slide, twice
def test_bf16_runs_scorecam_tiles_close_to_float32_and_is_recorded(tmp_path):
    args = ["slide", str(HE_SLIDE_PATH), "--mpp", "4.0", "--method", "scorecam"]
    assert main([*args, "--out", str(tmp_path / "exact")]) == 0
    assert main([*args, "--out", str(tmp_path / "bf16"), "--bf16"]) == 0
    maps = {}
    for run in ("exact", "bf16"):
        out = outputs(tmp_path / run)
        summary = json.loads(out["summary"].read_text())
        assert summary["heatmap"]["bfloat16"] is (run == "bf16")
        maps[run] = np.asarray(zarr.open_group(str(out["heatmap"]), mode="r")["0"])
    exact, rounded = maps["exact"], maps["bf16"]
    assert exact.max() > 0 and not np.array_equal(rounded, exact)
    np.testing.assert_allclose(rounded / exact.max(), exact / exact.max(), atol=0.05)


def test_bf16_is_refused_for_gradcam_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["slide", str(HE_SLIDE_PATH), "--out", str(out), "--bf16"]) == 2
    assert "turn bfloat16 off" in capsys.readouterr().err and not out.exists()
