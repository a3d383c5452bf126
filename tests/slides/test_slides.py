import pickle
import time

import numpy as np
import pytest
import tifffile

from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.tiling.grid import Stitcher
from napari_gradcam.data import HE_SLIDE_PATH, read_he_region
from napari_gradcam.models.cache import cached_model
from napari_gradcam.slides import open_slide
from napari_gradcam.slides.batches import BatchTask, in_order, run_batch
from napari_gradcam.slides.runner import SlideJob, plan_slide
from napari_gradcam.slides.synthetic import synthetic_slide


def write_pyramid(path, mpp: float | None = 0.5, shape=(600, 800)) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    resolution = {}
    if mpp is not None:
        resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(data, tile=(128, 128), subifds=2, photometric="rgb", **resolution)
        for factor in (2, 4):
            tiff.write(data[::factor, ::factor], tile=(128, 128), subfiletype=1)
    return data


def test_the_cc0_slide_opens_lazily_with_its_mpp():
    slide = open_slide(HE_SLIDE_PATH)
    assert slide.level_shapes == ((2967, 2220, 3),) and slide.downsamples == ((1.0, 1.0),)
    assert slide.mpp == pytest.approx(0.499) and slide.mpp_source == "metadata"
    np.testing.assert_array_equal(
        slide.levels[0][1000:1010, 500:520], read_he_region()[1000:1010, 500:520]
    )
    assert slide.dask_levels()[0].chunksize[:2] == (240, 240)


def test_a_pyramidal_tiff_gives_levels_downsamples_and_mpp(tmp_path):
    data = write_pyramid(tmp_path / "pyramid.tif")
    slide = open_slide(tmp_path / "pyramid.tif")
    assert slide.level_shapes == ((600, 800, 3), (300, 400, 3), (150, 200, 3))
    assert slide.downsamples == ((1.0, 1.0), (2.0, 2.0), (4.0, 4.0))
    assert slide.mpp == pytest.approx(0.5)
    np.testing.assert_array_equal(slide.levels[1][:5, :5], data[::2, ::2][:5, :5])
    reopened = pickle.loads(pickle.dumps(slide))
    assert reopened.level_shapes == slide.level_shapes and reopened.path == slide.path


def test_missing_mpp_is_unknown_unless_given(tmp_path):
    write_pyramid(tmp_path / "plain.tif", mpp=None)
    assert open_slide(tmp_path / "plain.tif").mpp is None
    given = open_slide(tmp_path / "plain.tif", mpp=0.25)
    assert (given.mpp, given.mpp_source) == (0.25, "given")
    assert pickle.loads(pickle.dumps(given)).mpp == 0.25


@pytest.mark.parametrize(("name", "keep"), [("cc0.svs", 0.3), ("cc0.svs", 0.6), ("p.tif", 0.9)])
def test_truncated_slides_say_so(tmp_path, name, keep):
    if name == "cc0.svs":
        whole = HE_SLIDE_PATH.read_bytes()  # level 0 fills the first 66 %, then thumbnails
    else:
        write_pyramid(tmp_path / "pyramid.tif")
        whole = (tmp_path / "pyramid.tif").read_bytes()
    (tmp_path / name).write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(ValueError, match="truncated"):
        open_slide(tmp_path / name)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a tiff at all", "not a TIFF or SVS"), (None, "no slide file")],
)
def test_unreadable_files_say_so(tmp_path, content, message):
    path = tmp_path / "slide.svs"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        open_slide(path)


def test_a_stack_is_not_a_slide(tmp_path):
    tifffile.imwrite(
        tmp_path / "stack.tif",
        np.zeros((3, 64, 64), np.uint8),
        tile=(32, 32),
        photometric="minisblack",
    )
    with pytest.raises(ValueError, match="only 2-D grayscale or RGB"):
        open_slide(tmp_path / "stack.tif")


def test_a_40000_px_synthetic_pyramid_plans_and_explains_lazily(tmp_path):
    start = time.perf_counter()
    slide = synthetic_slide(40_000)
    assert slide.level_shapes[:2] == ((40000, 40000, 3), (20000, 20000, 3))
    job = SlideJob(batch_size=16)
    loaded = cached_model("demo", None)
    plan = plan_slide(slide, job, loaded)
    assert plan.level == 1 and plan.view.resample == 1.0  # 0.5 µm/px for a 0.499 model
    assert plan.grid.n_tiles == 416**2
    assert 0.05 < len(plan.explained) / plan.grid.n_tiles < 0.3
    import zarr

    out = zarr.create_array(
        tmp_path / "map.zarr", shape=plan.grid.map_shape, chunks=(256, 256), dtype="float32"
    )
    stitcher = Stitcher(plan.grid, out=out)
    for batch in plan.batches(job.batch_size)[:2]:
        task = BatchTask(
            slide,
            plan.level,
            1.0,
            plan.grid.origins[batch],
            (96, 96),
            batch,
            ("demo", None),
            plan.settings,
            (0, 255),
        )
        results = run_batch(task)
        stitcher.add(results.indices, results.cams)
        assert set(results.facts) >= {"class_index", "margin", "entropy"}
    assert stitcher._sum.nbytes < 1e6  # one band of the map, not the map
    assert time.perf_counter() - start < 60


def test_the_local_runner_hands_the_lazy_slide_to_its_tasks():
    slide = synthetic_slide(1024, chunk=256)
    kinds = list(in_order(lambda item: type(item.levels[0]).__name__, [slide, slide]))
    assert kinds == ["Array", "Array"]  # dask arrays, not computed numpy levels


def test_synthetic_levels_agree():
    slide = synthetic_slide((4096, 6144), tissue_share=0.3, seed=3)
    coarse = np.asarray(slide.levels[2])
    fine = np.asarray(slide.levels[0][::4, ::4])
    glass = np.all(coarse == (241, 238, 243), axis=-1)
    assert 0.5 < glass.mean() < 0.85
    assert np.mean(glass == np.all(fine == (241, 238, 243), axis=-1)) > 0.97


def test_tile_settings_reach_the_workers_resolved():
    slide = open_slide(HE_SLIDE_PATH)
    plan = plan_slide(
        slide,
        SlideJob(mpp=4.0, settings=ExplainSettings(target="stroma")),
        cached_model("demo", None),
    )
    assert plan.settings.layer == "features.14" and plan.settings.target == "stroma"
    assert plan.view.resample == pytest.approx(4.0 / 0.499)
