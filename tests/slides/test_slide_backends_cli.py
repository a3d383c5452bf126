import json

import numpy as np
import pytest
import zarr

from napari_gradcam.cli import main
from tests.slides.slide_files import write_slide

FAST = ["--mpp", "2.0", "--all-tiles", "--batch-size", "32"]
"""The 600 x 800 test slides at 2 µm/px (their level 2 as it is): a dozen tiles."""


def run_slide(path, out, *extra) -> tuple[np.ndarray, dict]:
    assert main(["slide", str(path), "--out", str(out), *FAST, *extra]) == 0
    stem = path.name.split(".")[0]
    summary = json.loads((out / f"{stem}.json").read_text())
    heatmap = np.asarray(zarr.open_group(str(out / f"{stem}.heatmap.zarr"), mode="r")["0"])
    return heatmap, summary


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiled TIFF explained through tifffile: heatmap and summary."""
    folder = tmp_path_factory.mktemp("tiff")
    path, _ = write_slide("tiled-tiff", folder)
    return path, run_slide(path, folder / "out", "--backend", "tifffile")


@pytest.mark.parametrize(("kind", "backend"), [("tiled-tiff", "openslide"), ("dicom", None)])
def test_every_backend_gives_the_same_slide_heatmap(reference, tmp_path, kind, backend):
    path = reference[0] if kind == "tiled-tiff" else write_slide(kind, tmp_path)[0]
    extra = ["--backend", backend] if backend else []
    heatmap, summary = run_slide(path, tmp_path / "out", *extra)
    expected, expected_summary = reference[1]
    assert summary["heatmap"]["level"] == expected_summary["heatmap"]["level"] == 2
    assert summary["heatmap"]["mpp"] == pytest.approx(0.5)
    assert summary["tiles"] == expected_summary["tiles"] and summary["tiles"]["explained"] > 0
    assert heatmap.max() > 0
    np.testing.assert_allclose(heatmap, expected, rtol=1e-5, atol=1e-6)


def test_an_unsupported_file_fails_alone_naming_the_formats(tmp_path, capsys):
    (tmp_path / "zeiss.czi").write_bytes(b"zeiss")
    (tmp_path / "fake.ndpi").write_bytes(b"not hamamatsu")
    args = ["slide", str(tmp_path / "zeiss.czi"), str(tmp_path / "fake.ndpi")]
    assert main([*args, "--out", str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "not a slide format" in err and "Hamamatsu NDPI (.ndpi)" in err
    assert "OpenSlide does not recognise" in err


def world_corners(layer) -> np.ndarray:
    """World positions of the centres of the first and last cells of level 0."""
    last = np.asarray(layer.level_shapes[0] if layer.multiscale else layer.data.shape) - 1
    return np.array([layer.data_to_world(np.zeros(2)), layer.data_to_world(last)])


def test_napari_ome_zarr_opens_the_heatmap_where_this_plugin_does(reference):
    # napari-ome-zarr 0.9 and 0.10 read only the first transformation of a dataset and drop
    # its translation (any OME-Zarr with a translation opens shifted); 0.8 reads both

    import napari
    from napari_ome_zarr._reader import napari_get_reader
    from ome_zarr_models.v05 import Image

    from napari_gradcam._napari.reader import get_slide_reader

    path = reference[0]
    heatmap = str(path.parent / "out" / "slide.heatmap.zarr")
    Image.from_zarr(zarr.open_group(heatmap, mode="r"))  # valid OME-Zarr 0.5 (raises if not)
    ((data, kwargs, kind),) = get_slide_reader(heatmap)(heatmap)
    (ome_layer,) = napari_get_reader(heatmap)(heatmap)
    ours = napari.layers.Layer.create(data, kwargs, kind)
    theirs = napari.layers.Layer.create(*ome_layer)
    np.testing.assert_allclose(world_corners(theirs), world_corners(ours))
    np.testing.assert_allclose(theirs.extent.world, ours.extent.world)
    # and both sit on the slide: the first cell's centre is half a 96 px tile's stride in
    stride_um = reference[1][1]["heatmap"]["stride"][0] * 0.5
    np.testing.assert_allclose(world_corners(theirs)[0], [(stride_um - 0.5) / 2] * 2)
