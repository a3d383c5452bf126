import subprocess
import sys

import numpy as np
import pytest

from napari_gradcam.data import HE_MPP, HE_SLIDE_PATH, _read_mpp, ihc_tile, read_he_region


def test_slide_is_bundled_and_mpp_read_from_description() -> None:
    assert HE_SLIDE_PATH.is_file()
    assert HE_SLIDE_PATH.suffix == ".svs"
    assert abs(HE_MPP - 0.499) < 1e-9


def test_mpp_falls_back_when_file_is_not_a_tiff(tmp_path) -> None:
    bogus = tmp_path / "not-a-slide.svs"
    bogus.write_bytes(b"hello")
    assert _read_mpp(bogus) == pytest.approx(0.499)


def test_he_region_is_level_0_rgb_read_only_and_cached() -> None:
    rgb = read_he_region()
    assert rgb.shape == (2967, 2220, 3)
    assert rgb.dtype == np.uint8
    assert not rgb.flags.writeable
    assert read_he_region() is rgb
    # glass is bright, stained tissue is not
    assert np.percentile(rgb, 90) > 220 and rgb.min() < 100


def test_ihc_tile() -> None:
    tile = ihc_tile()
    assert tile.shape == (512, 512, 3)
    assert tile.dtype == np.uint8


def test_import_needs_neither_torch_nor_napari() -> None:
    code = (
        "import sys, napari_gradcam.data; print(any(m in sys.modules for m in ('torch', 'napari')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
