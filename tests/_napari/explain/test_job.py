import numpy as np
import pytest

from napari_gradcam._napari.explain.job import ExplainJob, JobOutcome, run_job
from napari_gradcam._napari.model_events import ModelReady
from napari_gradcam._napari.plane import Plane
from napari_gradcam._napari.regions import Box, whole_layer_box
from napari_gradcam.core.progress import Progress
from napari_gradcam.core.settings import ExplainSettings


def run_to_end(job: ExplainJob) -> tuple[list[object], JobOutcome]:
    steps = []
    generator = run_job(job)
    while True:
        try:
            steps.append(next(generator))
        except StopIteration as stop:
            return steps, stop.value


def plane_job(pixels: np.ndarray, spec: str, weights: str, **kwargs) -> ExplainJob:
    plane = Plane((pixels,), ((1.0, 1.0),))
    boxes = kwargs.pop("boxes", (whole_layer_box(pixels.shape),))
    return ExplainJob(spec, weights, plane=plane, boxes=boxes, **kwargs)


@pytest.mark.parametrize(
    "pixels",
    [
        np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65536, (32, 48), dtype=np.uint16),
        np.random.default_rng(3).random((32, 48), dtype=np.float32) * 7 - 2,
    ],
    ids=["rgb-uint8", "gray-uint16", "gray-float"],
)
def test_job_explains_each_dtype(pixels, tiny_spec, tiny_weights):
    steps, outcome = run_to_end(plane_job(pixels, tiny_spec, tiny_weights))
    assert outcome.error is None
    (result,) = outcome.results
    assert result.explanation.cam.shape == (8, 12)
    assert result.stride == (4.0, 4.0) and result.origin == (0.0, 0.0)
    assert [s.step for s in steps if isinstance(s, Progress)] == [0, 1, 2]
    (ready,) = [s for s in steps if isinstance(s, ModelReady)]
    assert ready.model.classes == ("background", "tissue")
    assert ready.model.layers[-1] == ("4 (4x4)", "4")  # (label with its grid, name)


def test_job_explains_each_box_with_its_origin(tile, tiny_spec, tiny_weights):
    boxes = (Box(0, 0, 32, 32, "rectangle 0"), Box(16, 40, 64, 96, "rectangle 1"))
    job = plane_job(
        tile, tiny_spec, tiny_weights, boxes=boxes, settings=ExplainSettings(target="tissue")
    )
    _, outcome = run_to_end(job)
    assert [r.origin for r in outcome.results] == [(0.0, 0.0), (16.0, 40.0)]
    assert [r.explanation.cam.shape for r in outcome.results] == [(8, 8), (12, 14)]
    assert all(r.explanation.target_names == ("tissue",) for r in outcome.results)
    assert outcome.summary(shown=1).startswith("tissue p=0.")
    assert "; +1 more (" in outcome.summary(shown=1)


def test_model_only_job_returns_no_results(tiny_spec, tiny_weights):
    steps, outcome = run_to_end(ExplainJob(tiny_spec, tiny_weights))
    assert outcome.error is None and outcome.results == ()
    assert any(isinstance(s, ModelReady) for s in steps)


@pytest.mark.parametrize(
    ("pixels", "bad_spec", "message"),
    [
        (np.zeros((32, 32, 3), np.uint8) + 5, None, "constant"),
        (np.ones((8, 8, 3), np.uint8), None, "needs at least"),
        (np.full((32, 32), np.nan, np.float32), None, "NaN"),
        (np.eye(32), "no_such_module:factory", "Could not load the model"),
        (np.eye(32), "missing/model.pt", "no model file"),
    ],
    ids=["constant", "too-small", "nan", "bad-spec", "missing-file"],
)
def test_job_reports_user_errors(pixels, bad_spec, message, tiny_spec, tiny_weights):
    job = plane_job(pixels, bad_spec or tiny_spec, tiny_weights)
    _, outcome = run_to_end(job)
    assert outcome.results == ()
    assert message in outcome.error


def test_a_region_read_on_a_coarser_level_hands_over_its_level0_placement(tiny_spec, tiny_weights):
    from dataclasses import replace

    from napari_gradcam._napari.explain.job import RegionResult

    fine = np.random.default_rng(4).integers(0, 256, (128, 192, 3), dtype=np.uint8)
    plane = Plane((fine, fine[::2, ::2]), ((1.0, 1.0), (2.0, 2.0)), mpp=0.5)  # model: 1 µm/px
    box = Box(16, 40, 80, 136, "rectangle 0")
    _, outcome = run_to_end(ExplainJob(tiny_spec, tiny_weights, plane=plane, boxes=(box,)))
    (result,) = outcome.results
    assert result.level == 1 and result.explanation.cam.shape == (8, 12)
    placed = result.placed
    assert placed.stride == (8.0, 8.0) and placed.origin == (16.0, 40.0)
    np.testing.assert_array_equal(placed.cam, result.explanation.cam)
    shifted = replace(result.explanation, origin=(1.0, 3.0))  # a map of a crop inside the crop
    moved = RegionResult.on_crop(box, shifted, (16.0, 40.0), (2.0, 2.0), 1).placed
    assert moved.origin == (18.0, 46.0) and moved.stride == (8.0, 8.0)
