import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.explain.preprocess import to_batch
from napari_gradcam.core.trust.sanity import compare_maps, parameter_layers, sanity_check
from tests.core.he_tiles import demo_model, he_tile


@pytest.fixture(scope="module")
def dense_batch() -> torch.Tensor:
    return to_batch(he_tile("dense_edge"), demo_model().card, torch.device("cpu"))


def test_cascade_runs_from_the_output_backwards(dense_batch) -> None:
    names = parameter_layers(demo_model().module, dense_batch)
    assert names[-1] == "classifier" and names[:2] == ["features.0", "features.1"]
    assert len(names) == 9


def test_randomised_weights_give_a_low_correlation_verdict(dense_batch) -> None:
    demo = demo_model()
    before = {k: v.clone() for k, v in demo.module.state_dict().items()}
    original = ng.explain(demo, dense_batch)
    check = sanity_check(demo, dense_batch, original, steps=9, repeats=2)
    assert len(check.steps) == 9 and check.steps[-1].randomised[0] == "classifier"
    assert check.steps[-1].spearman < 0.3
    assert check.depends_on_weights and check.verdict.startswith("passes")
    for key, value in demo.module.state_dict().items():
        torch.testing.assert_close(value, before[key])  # the cascade ran on a copy


def test_a_map_that_ignores_the_randomised_layers_fails(dense_batch) -> None:
    demo = demo_model()
    original = ng.explain(demo, dense_batch, method="eigencam")
    check = sanity_check(demo, dense_batch, original, steps=1, repeats=1)
    (step,) = check.steps
    assert step.randomised == ("classifier",)
    assert step.spearman == pytest.approx(1.0) and step.ssim == pytest.approx(1.0)
    assert check.depends_on_weights is False
    assert check.verdict.startswith("fails") and "reasoning" in check.verdict


def test_a_constant_map_is_not_checked(dense_batch) -> None:
    original = ng.explain(demo_model(), dense_batch)
    flat = ng.Explanation(**{**original.__dict__, "cam": np.zeros_like(original.cam)})
    check = sanity_check(demo_model(), dense_batch, flat)
    assert check.steps == () and check.depends_on_weights is None
    assert check.verdict.startswith("not checked")


def test_compare_maps_handles_constant_and_tiny_maps() -> None:
    ramp = np.add.outer(np.arange(5.0), np.arange(5.0))
    assert compare_maps(ramp, ramp) == pytest.approx((1.0, 1.0))
    assert compare_maps(ramp, -ramp)[0] == pytest.approx(-1.0)
    assert compare_maps(ramp, np.zeros_like(ramp))[0] is None
    assert compare_maps(ramp[:2, :2], ramp[:2, :2])[1] is None


def test_torchscript_models_are_refused_with_advice(dense_batch) -> None:
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3)))
    with pytest.raises(ValueError, match="Python model"):
        parameter_layers(scripted, dense_batch)
