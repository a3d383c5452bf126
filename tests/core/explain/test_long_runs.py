"""Memory budget, progress and cancelling for the methods that run many forwards."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core.explain.batching import AUTO_BUDGET_MB, MB, chunk_size
from tests.architectures import build
from tests.core.reference_forward import layer_output

LONG = ["scorecam", "ablationcam", "occlusion"]


def untouched(model: nn.Module) -> bool:
    """No hooks left, frozen flags restored, weights back in their usual layout."""
    return (
        not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
        and all(p.requires_grad and p.grad is None for p in model.parameters())
        and all(p.is_contiguous() for p in model.parameters())
        and all(m.training for m in model.modules())
    )


def varying_channels(model: nn.Module, batch: torch.Tensor) -> int:
    """Channels of layer3 that are not constant: Score-CAM runs one forward for each."""
    with torch.no_grad():
        activation = layer_output(model.eval(), batch[0], model.layer3)
        other = layer_output(model, batch[1], model.layer3)
    flat = torch.stack([activation, other]).flatten(2)
    return int((flat.amax(2) != flat.amin(2)).sum())


@pytest.mark.parametrize("method", LONG)
def test_progress_counts_every_masked_forward(method: str) -> None:
    model, batch = build("resnet"), torch.randn(2, 3, 32, 32)
    calls: list[tuple[int, int]] = []
    ng.explain(
        model,
        batch,
        method=method,
        options=ng.OcclusionOptions(stride=4) if method == "occlusion" else None,
        monitor=ng.Monitor(lambda d, t: calls.append((d, t)), memory_budget_mb=0.1),
    )
    totals = {t for _, t in calls}
    assert len(totals) == 1
    total = totals.pop()
    expected = {
        "scorecam": varying_channels(model, batch),
        "ablationcam": 64,
        "occlusion": 2 * 8 * 8,  # stride 4
    }
    assert total == expected[method]
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[0] == 0 and done[-1] == total and len(done) > 3


@pytest.mark.parametrize("method", ["gradcam", "eigencam", "guidedbackprop"])
def test_short_methods_report_completion(method: str) -> None:
    calls: list[tuple[int, int]] = []
    ng.explain(
        build("resnet"),
        torch.randn(1, 3, 32, 32),
        method=method,
        monitor=ng.Monitor(lambda d, t: calls.append((d, t))),
    )
    assert calls[-1] == (1, 1)


@pytest.mark.parametrize("method", LONG)
def test_cancel_stops_between_chunks_and_leaves_nothing(method: str) -> None:
    model = build("resnet").train()
    calls: list[int] = []
    with pytest.raises(ng.ExplanationCancelled):
        ng.explain(
            model,
            torch.randn(1, 3, 32, 32),
            method=method,
            monitor=ng.Monitor(
                lambda d, t: calls.append(d), lambda: len(calls) >= 3, memory_budget_mb=0.1
            ),
        )
    assert 3 <= len(calls) < 10
    assert untouched(model)


def test_cancel_before_anything_runs() -> None:
    model = build("resnet").train()
    with pytest.raises(ng.ExplanationCancelled):
        ng.explain(model, torch.randn(1, 3, 32, 32), monitor=ng.Monitor(should_stop=lambda: True))
    assert untouched(model)


@pytest.mark.parametrize("method", LONG)
def test_a_budget_too_small_for_one_forward_is_refused(method: str) -> None:
    model = build("resnet").train()
    with pytest.raises(ValueError, match=r"memory_budget_mb=0.001 is too small.*at least"):
        budget = ng.Monitor(memory_budget_mb=0.001)
        ng.explain(model, torch.randn(1, 3, 32, 32), method=method, monitor=budget)
    assert untouched(model)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ng.Monitor(memory_budget_mb=0), "must be positive"),
        (lambda: ng.OcclusionOptions(window=0), "occlusion_window must be a positive"),
        (lambda: ng.OcclusionOptions(stride=2.5), "occlusion_stride must be a positive"),
        (lambda: ng.OcclusionOptions(baseline="white"), "use 'blur' or 'mean'"),
        (lambda: ng.ExplainSettings("gradcam", options=ng.RolloutOptions()), "Grad-CAM takes"),
        (lambda: ng.ExplainSettings("gradcam", bfloat16=True), "turn bfloat16 off"),
    ],
)
def test_bad_settings(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "eigencam", "guidedbackprop"])
def test_torchscript_models_are_pointed_to_occlusion(method: str) -> None:
    scripted = torch.jit.script(build("resnet").eval())
    with pytest.raises(ValueError, match=r"TorchScript.*method='occlusion'"):
        ng.explain(scripted, torch.randn(1, 3, 32, 32), method=method)


def test_a_layer_without_spatial_output_is_refused_for_forward_methods() -> None:
    model = build("resnet").train()
    with pytest.raises(ValueError, match="not a spatial"):
        ng.explain(model, torch.randn(1, 3, 32, 32), method="scorecam", layer="fc")
    assert untouched(model)


def test_chunk_sizes() -> None:
    assert chunk_size(None, 10 * MB) == AUTO_BUDGET_MB // 10
    assert chunk_size(None, 10 * AUTO_BUDGET_MB * MB) == 1  # no budget given: never refused
    assert chunk_size(100, 10 * MB, fixed_bytes=25 * MB) == 7
    with pytest.raises(ValueError, match="too small"):
        chunk_size(100, 10 * MB, fixed_bytes=95 * MB)
