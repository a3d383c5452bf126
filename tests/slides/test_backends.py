import pickle

import numpy as np
import pytest

from napari_gradcam.slides import open_slide
from napari_gradcam.slides.lazy_slide import FORMATS, backends_for
from napari_gradcam.slides.openslide_backend import composite
from tests.slides.slide_files import MPP, write_ome_tiff, write_slide

CASES = [
    ("svs", "tifffile", 3),
    ("svs", "openslide", 3),
    ("ome-tiff", "tifffile", 3),
    ("ome-tiff", "openslide", 1),  # OpenSlide does not see SubIFD levels
    ("tiled-tiff", "tifffile", 3),
    ("tiled-tiff", "openslide", 3),
    ("dicom", "wsidicom", 3),
    ("dicom", "openslide", 3),
]
DEFAULT = {"svs": "tifffile", "ome-tiff": "tifffile", "tiled-tiff": "tifffile", "dicom": "wsidicom"}


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """Every kind of test slide, written once: kind -> (path, levels' pixels)."""
    folder = tmp_path_factory.mktemp("slides")
    return {kind: write_slide(kind, folder) for kind in DEFAULT}


@pytest.mark.parametrize(("kind", "backend", "n_levels"), CASES)
def test_every_backend_reads_the_written_pixels_and_mpp(slides, kind, backend, n_levels):
    path, truth = slides[kind]
    slide = open_slide(path, backend=backend)
    assert slide.backend == backend and len(slide.levels) == n_levels
    assert slide.mpp == pytest.approx(MPP) and slide.mpp_source == "metadata"
    assert slide.downsamples == ((1.0, 1.0), (2.0, 2.0), (4.0, 4.0))[:n_levels]
    for level, pixels in enumerate(truth[:n_levels]):
        assert slide.level_shapes[level] == pixels.shape
        np.testing.assert_array_equal(slide.read_region(level, (0, 0, *pixels.shape[:2])), pixels)
    # a box across chunk and tile borders, and the dask levels napari gets
    np.testing.assert_array_equal(
        slide.read_region(0, (100, 500, 590, 777)), truth[0][100:590, 500:777]
    )
    np.testing.assert_array_equal(
        np.asarray(slide.dask_levels()[0][3:9, 700:]), truth[0][3:9, 700:]
    )


@pytest.mark.parametrize(("kind", "backend", "n_levels"), CASES)
def test_a_slide_reopens_with_its_backend_after_pickling(slides, kind, backend, n_levels):
    slide = open_slide(slides[kind][0], mpp=0.3, backend=backend)
    copy = pickle.loads(pickle.dumps(slide))
    assert (copy.backend, copy.mpp, copy.mpp_source) == (backend, 0.3, "given")
    np.testing.assert_array_equal(
        copy.read_region(n_levels - 1, (5, 6, 40, 50)),
        slide.read_region(n_levels - 1, (5, 6, 40, 50)),
    )


def test_tifffile_reads_the_ome_physical_size_without_resolution_tags(tmp_path):
    write_ome_tiff(tmp_path / "slide.ome.tif", mpp=0.37, tags=False)
    assert open_slide(tmp_path / "slide.ome.tif").mpp == pytest.approx(0.37)
    assert open_slide(tmp_path / "slide.ome.tif", backend="openslide").mpp is None


@pytest.mark.parametrize("kind", DEFAULT)
def test_the_default_backend_follows_the_format(slides, kind):
    path, _ = slides[kind]
    assert open_slide(path).backend == DEFAULT[kind]
    if kind == "dicom":  # one file of the folder opens the whole series
        slide = open_slide(path / "level1.dcm")
        assert slide.level_shapes[0] == (600, 800, 3) and slide.name == "dicom-slide"


@pytest.mark.parametrize("suffix", [".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"])
def test_vendor_formats_go_to_openslide(tmp_path, suffix):
    path = tmp_path / f"slide{suffix}"
    path.write_bytes(b"not a slide")
    assert backends_for(path) == ("openslide",)
    with pytest.raises(ValueError, match="OpenSlide does not recognise"):
        open_slide(path)


def test_an_unknown_format_names_the_formats_that_open(tmp_path):
    (tmp_path / "slide.czi").write_bytes(b"zeiss")
    with pytest.raises(ValueError, match="not a slide format") as error:
        open_slide(tmp_path / "slide.czi")
    for suffix in FORMATS:
        assert suffix in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without DICOM"):
        open_slide(tmp_path / "empty")


def test_a_wrong_backend_says_what_went_wrong(slides):
    with pytest.raises(ValueError, match="unknown slide backend 'bioformats'"):
        open_slide(slides["svs"][0], backend="bioformats")
    with pytest.raises(ValueError, match="wsidicom cannot read"):
        open_slide(slides["svs"][0], backend="wsidicom")


def test_transparent_openslide_pixels_take_the_background_colour():
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [200, 100, 0, 128]]], np.uint8)
    rgb = composite(rgba, np.array([240.0, 240.0, 240.0], np.float32))
    expected = [
        [10, 20, 30],
        [240, 240, 240],
        np.round(np.array([200, 100, 0]) * 128 / 255 + 240 * 127 / 255),
    ]
    np.testing.assert_array_equal(rgb[0], np.asarray(expected, np.uint8))


@pytest.mark.parametrize(("kind", "backend"), [("dicom", "openslide"), ("dicom", "wsidicom")])
def test_box_read_levels_slice_like_numpy(slides, kind, backend):
    path, truth = slides[kind]
    level = open_slide(path, backend=backend).levels[1]
    for key in [
        (slice(None, None, 3), slice(5, 50, 2)),
        (slice(250, 400), slice(-30, None)),  # clipped at the edge, from the end
        (slice(10, 10), slice(None)),
        (slice(0, 7), slice(0, 9), slice(1, 2)),
    ]:
        np.testing.assert_array_equal(level[key], truth[1][key])
    np.testing.assert_array_equal(np.asarray(level), truth[1])
    with pytest.raises(IndexError, match="slices only"):
        level[3, 4]


def test_dask_levels_of_a_backend_are_named_by_file_and_level(slides):
    slide = open_slide(slides["dicom"][0])
    first, again = slide.dask_levels()[0], open_slide(slides["dicom"][0]).dask_levels()[0]
    assert first.name == again.name != slide.dask_levels()[1].name
    assert first.chunksize == (512, 512, 3)
