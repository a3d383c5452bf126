"""The fast form of a model: same logits, BatchNorm folded on a copy, the user's model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import fx, nn

import napari_gradcam as ng
from napari_gradcam.core.explain.fast_forward import fast_inference
from tests.architectures import build
from tests.core.explain.test_gradcam_reference import assert_same_map
from tests.core.reference_forward import reference_scorecam


def example(shape: tuple = (2, 3, 32, 32)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(3))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def test_batchnorm_is_folded_into_a_copy_that_gives_the_same_logits() -> None:
    model, x = build("resnet").eval(), example()
    before = snapshot(model)
    with torch.inference_mode():
        expected = model(x)
        with fast_inference(model, x) as forward:
            logits = forward(x)
    fast = forward.module
    assert fast is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert forward.layout == torch.channels_last and forward.dtype == torch.float32
    weights = [p for p in fast.parameters() if p.ndim == 4]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
    after = snapshot(model)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(p.is_contiguous() for p in model.parameters())


class DataDependent(nn.Module):
    """Control flow on a tensor's value: FX cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        if features.mean() > 0:
            features = features * 2
        return self.head(features.mean(dim=(2, 3)))


def test_an_untraceable_model_runs_itself_with_channels_last_weights_restored_after() -> None:
    model, x = DataDependent().eval(), example()
    with pytest.raises(fx.proxy.TraceError):  # the premise of this test
        fx.symbolic_trace(model)
    with fast_inference(model, x) as forward:
        assert forward.module is model
        assert model.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.body[0].weight.is_contiguous()


def test_a_copy_that_loses_a_hook_on_the_model_is_not_used() -> None:
    model, x = build("resnet").eval(), example()
    model.register_forward_hook(lambda _module, _inputs, output: output * 3 + 1)
    with torch.inference_mode():
        expected = model(x)
        with fast_inference(model, x) as forward:
            logits = forward(x)
    assert forward.module is model
    torch.testing.assert_close(logits, expected)


def test_scorecam_on_a_model_fx_cannot_trace_matches_the_reference() -> None:
    model = DataDependent().double().eval()
    image = example((3, 16, 16)).double()
    explanation = ng.explain(model, image[None], method="scorecam", layer="body", target=1)
    assert_same_map(explanation.cam[0], reference_scorecam(model, image, model.body, 1))


@pytest.mark.parametrize("model", [build("resnet"), DataDependent()], ids=["traced", "copied"])
def test_bfloat16_runs_a_copy_in_bfloat16_and_rounds_the_logits_only(model) -> None:
    model, x = model.eval(), example()
    with torch.inference_mode():
        expected = model(x)
        with fast_inference(model, x, bfloat16=True) as forward:
            logits = forward(x)
    fast = forward.module
    assert fast is not model and next(fast.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32 and logits.dtype == torch.float32
    scale = float(expected.abs().max())
    torch.testing.assert_close(logits, expected, rtol=0.05, atol=0.05 * scale)
    assert not torch.equal(logits, expected)


def test_scorecam_in_bfloat16_stays_close_to_float32() -> None:
    model = build("resnet").eval()
    image = example((1, 3, 40, 48))
    exact = ng.explain(model, image, method="scorecam", layer="layer3", target=2).cam[0]
    result = ng.explain(model, image, method="scorecam", layer="layer3", target=2, bfloat16=True)
    rounded = result.cam[0]
    assert exact.max() > 0 and not np.array_equal(rounded, exact)
    np.testing.assert_allclose(rounded / exact.max(), exact / exact.max(), atol=0.02)
    assert result.bfloat16 and result.summary()["bfloat16"] is True


@pytest.mark.parametrize("method", ["gradcam", "ablationcam", "eigencam", "guidedbackprop"])
def test_methods_without_masked_forwards_refuse_bfloat16(method: str) -> None:
    model = build("resnet").eval()
    with pytest.raises(ValueError, match=r"scorecam and occlusion only.*turn bfloat16 off"):
        ng.explain(model, example((1, 3, 40, 48)), method=method, layer="layer3", bfloat16=True)
