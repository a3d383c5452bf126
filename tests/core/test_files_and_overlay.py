"""Reading images, atomic writes, and overlays whose map cells land on their pixel blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.core.image_files import read_image
from napari_gradcam.core.output_files import atomic_write
from napari_gradcam.core.overlay import overlay, upsample_to_image


def test_read_svs_level_zero() -> None:
    from napari_gradcam.data import HE_SLIDE_PATH

    image = read_image(HE_SLIDE_PATH)
    assert image.shape == (2967, 2220, 3)
    assert image.dtype == np.uint8


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no image file"):
        read_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="cannot read"):
        read_image(broken)


def test_read_image_checks_the_declared_size_before_reading(tmp_path: Path) -> None:
    import tracemalloc

    from napari_gradcam.core.pixel_limit import TooManyPixels
    from tests.hostile_files import write_declared_png, write_declared_tiff

    declared = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(20_000, 20_000)
    )  # sparse on disk
    del declared
    files = [
        write_declared_tiff(tmp_path / "big.tif", 20_000),
        write_declared_png(tmp_path / "big.png", 20_000, 20_000),
        tmp_path / "big.npy",
    ]
    for path in files:
        tracemalloc.start()
        with pytest.raises(TooManyPixels, match="napari-gradcam slide"):
            read_image(path, max_pixels=10_000_000)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 50 * 2**20, path  # the pixels alone are 400 MB or more
    small = read_image(tmp_path / "big.npy", max_pixels=400_000_000)
    assert small.shape == (20_000, 20_000) and isinstance(small, np.ndarray)


def test_read_image_raises_pillows_limit_with_the_cap(tmp_path: Path) -> None:
    from PIL import Image

    from tests.hostile_files import write_declared_png

    path = write_declared_png(tmp_path / "big.png", 15_000, 15_000)  # over Pillow's 2x limit
    with pytest.raises(ValueError, match="over the limit of 67,108,864 pixels") as caught:
        read_image(path)
    assert "napari-gradcam slide" in str(caught.value) and "--max-pixels" in str(caught.value)
    limit = Image.MAX_IMAGE_PIXELS
    small = write_declared_png(tmp_path / "small.png", 1, 4)
    try:
        assert read_image(small, max_pixels=300_000_000).shape == (1, 4, 3)
        assert Image.MAX_IMAGE_PIXELS == 300_000_000  # 15,000² now opens, as asked
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("scan.overlay.png", "scan.overlay"),
        ("a.b.OME.TIFF", "a.b"),
        ("slide.svs", "slide"),
        (".png", "image"),
        ("..hidden.jpg", "hidden"),
        ("notes.txt", "notes.txt"),
    ],
)
def test_output_stem_strips_only_known_suffixes_and_never_hides(name: str, stem: str) -> None:
    from napari_gradcam.core.image_files import IMAGE_SUFFIXES
    from napari_gradcam.core.output_files import output_stem

    assert output_stem(Path("folder") / name, IMAGE_SUFFIXES, "image") == stem


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")

    def failing(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_upsampled_hot_cell_lands_on_its_block() -> None:
    cam = np.zeros((4, 5), np.float32)
    cam[2, 3] = 1.0
    heat = upsample_to_image(cam, (8.0, 8.0), (32, 40))
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert 16 <= peak[0] < 24 and 24 <= peak[1] < 32
    assert heat[16:24, 24:32].mean() > heat.mean() * 5


def test_upsample_pads_the_uncovered_edge() -> None:
    heat = upsample_to_image(np.ones((12, 12), np.float32), (8.0, 8.0), (100, 101))
    assert heat.shape == (100, 101)


def test_overlay_colours_hot_cells_red() -> None:
    image = np.full((16, 16), 0.5, np.float32)
    cam = np.array([[0.0, 0.0], [0.0, 1.0]], np.float32)
    rgb = overlay(image, cam, (8.0, 8.0), opacity=1.0)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert rgb[15, 15, 0] > 100 and rgb[15, 15, 2] < 50  # turbo's top end is red
    assert rgb[0, 0, 2] > rgb[0, 0, 0]  # turbo's bottom end is blue


def test_check_outputs_refuses_clashes_and_existing_files(tmp_path: Path) -> None:
    from napari_gradcam.core.output_files import check_outputs

    first = [tmp_path / "a.json", tmp_path / "a.png"]
    with pytest.raises(
        ValueError, match=r"several slides would write the same outputs: \['a.json'"
    ):
        check_outputs([first, [tmp_path / "a.json"]], "slides", overwrite=True)
    first[1].write_text("keep")
    with pytest.raises(FileExistsError, match="already exist"):
        check_outputs([first], "images", overwrite=False)
    check_outputs([first], "images", overwrite=True)
    assert first[1].read_text() == "keep"
