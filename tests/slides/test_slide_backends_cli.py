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
