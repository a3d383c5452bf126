import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_gradcam._napari.reader import get_slide_reader, read_slide
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.data import HE_SLIDE_PATH


def pyramid(path, mpp=0.25) -> None:
    data = np.random.default_rng(0).integers(0, 256, (512, 768, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(
            data,
            tile=(128, 128),
            subifds=1,
            photometric="rgb",
            resolution=(1e4 / mpp, 1e4 / mpp),
            resolutionunit="CENTIMETER",
        )
        tiff.write(data[::2, ::2], tile=(128, 128), subfiletype=1)


def test_the_cc0_slide_opens_in_microns():
    reader = get_slide_reader(str(HE_SLIDE_PATH))
    assert reader is read_slide
    ((data, kwargs, kind),) = reader(str(HE_SLIDE_PATH))
    assert kind == "image" and isinstance(data, da.Array) and data.shape == (2967, 2220, 3)
    assert kwargs["rgb"] and not kwargs["multiscale"]
    assert kwargs["scale"] == (pytest.approx(0.499),) * 2
    assert kwargs["units"] == ("micrometer", "micrometer")
    assert kwargs["metadata"]["mpp"] == pytest.approx(0.499)


def test_a_pyramid_opens_as_lazy_multiscale_levels(tmp_path):
    pyramid(tmp_path / "slide.tif")
    ((levels, kwargs, _),) = get_slide_reader(str(tmp_path / "slide.tif"))(
        str(tmp_path / "slide.tif")
    )
    assert kwargs["multiscale"] and [level.shape for level in levels] == [
        (512, 768, 3),
        (256, 384, 3),
    ]
    assert all(isinstance(level, da.Array) for level in levels)
    assert kwargs["scale"] == (0.25, 0.25)
    assert kwargs["metadata"]["slide"]["downsamples"] == [[1.0, 1.0], [2.0, 2.0]]


def test_other_files_are_left_to_other_readers(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((32, 32), np.uint8))
    stack = np.zeros((3, 64, 64), np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, tile=(32, 32), photometric="minisblack")
    (tmp_path / "notes.zarr").mkdir()
    (tmp_path / "broken.svs").write_bytes(b"nope")
    for name in ("plain.tif", "stack.tif", "notes.zarr", "broken.svs"):
        assert get_slide_reader(str(tmp_path / name)) is None
    assert get_slide_reader([str(HE_SLIDE_PATH)]) is None


def test_napari_opens_slides_with_this_plugin(make_napari_viewer, tmp_path):
    pyramid(tmp_path / "slide.tif", mpp=0.5)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "slide.tif"), plugin="napari-gradcam")
    assert layer.multiscale and layer.metadata["mpp"] == 0.5
    np.testing.assert_allclose(layer.scale, (0.5, 0.5))
    assert str(layer.units[0]) == "micrometer"


def test_opening_a_slide_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; from napari_gradcam._napari.reader import get_slide_reader; "
        f"get_slide_reader({str(HE_SLIDE_PATH)!r})({str(HE_SLIDE_PATH)!r}); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("kind", "backend"), [("dicom", "wsidicom"), ("svs", "tifffile")])
def test_every_format_opens_as_a_multiscale_layer_in_microns(tmp_path, kind, backend):
    from tests.slides.slide_files import write_slide

    path, truth = write_slide(kind, tmp_path)
    target = str(path / "level0.dcm") if kind == "dicom" else str(path)
    for opened in {target, str(path)}:  # a DICOM slide opens from its folder or any file
        ((levels, kwargs, _),) = get_slide_reader(opened)(opened)
        assert [level.shape for level in levels] == [pixels.shape for pixels in truth]
        assert kwargs["scale"] == (0.5, 0.5) and kwargs["metadata"]["slide"]["backend"] == backend
        np.testing.assert_array_equal(np.asarray(levels[2]), truth[2])


def test_vendor_files_are_opened_only_when_openslide_recognises_them(tmp_path):
    for suffix in (".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"):
        (tmp_path / f"fake{suffix}").write_bytes(b"not a slide")
        assert get_slide_reader(str(tmp_path / f"fake{suffix}")) is None
    (tmp_path / "folder").mkdir()
    assert get_slide_reader(str(tmp_path / "folder")) is None


def test_the_manifest_lists_every_slide_format():
    from importlib.resources import files

    import yaml

    from napari_gradcam.slides import SLIDE_SUFFIXES

    manifest = yaml.safe_load(files("napari_gradcam").joinpath("napari.yaml").read_text())
    patterns = manifest["contributions"]["readers"][0]["filename_patterns"]
    assert sorted(patterns) == sorted([f"*{suffix}" for suffix in SLIDE_SUFFIXES] + ["*.zarr"])


def test_napari_opens_a_dicom_slide_from_one_of_its_files(make_napari_viewer, tmp_path):
    from tests.slides.slide_files import write_slide

    path, truth = write_slide("dicom", tmp_path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path / "level2.dcm"), plugin="napari-gradcam")
    assert layer.multiscale and layer.metadata["mpp"] == 0.5 and layer.name == "dicom-slide"
    np.testing.assert_array_equal(np.asarray(layer.data[1]), truth[1])


def test_the_dock_explains_a_slide_alike_through_every_backend(tmp_path, tiny_spec, tiny_weights):
    from napari_gradcam._napari.explain.job import ExplainJob, run_job
    from napari_gradcam._napari.explain.tiled_job import TilingOptions
    from napari_gradcam._napari.plane import Plane
    from napari_gradcam._napari.regions import whole_layer_box
    from napari_gradcam.slides import open_slide
    from tests.slides.slide_files import write_slide

    path, _ = write_slide("tiled-tiff", tmp_path)
    cams = []
    for backend in ("tifffile", "openslide"):
        slide = open_slide(path, backend=backend)
        plane = Plane(tuple(slide.dask_levels()), slide.downsamples, (), slide.mpp)
        box = whole_layer_box(slide.level_shapes[0])
        job = ExplainJob(
            tiny_spec,
            tiny_weights,
            ExplainSettings(target="tissue"),
            plane=plane,
            boxes=(box,),
            tiling=TilingOptions(batch_size=64),
        )
        generator = run_job(job)
        while True:
            try:
                next(generator)
            except StopIteration as stop:
                (result,) = stop.value.results
                break
        assert result.geometry.level == 1  # the tiny model's 1 µm/px on a 0.5 µm/px slide
        cams.append(result.cam)
    assert cams[0].max() > 0
    np.testing.assert_allclose(cams[1], cams[0], rtol=1e-5, atol=1e-6)
