"""Score-CAM, Ablation-CAM and occlusion equal plain-forward loops of their formulas.

The models run in float64 so that batched and one-by-one forwards agree far below 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import napari_gradcam as ng
from tests.architectures import LateSkip, build
from tests.core.explain.test_gradcam_reference import assert_same_map
from tests.core.reference_forward import (
    reference_ablationcam,
    reference_occlusion,
    reference_scorecam,
)

CASES = [
    ("vgg", "features.7", (3, 64, 64)),
    ("resnet", "layer3", (3, 40, 48)),
    ("resnet", "layer2.body.0", (3, 32, 32)),
    ("resnet", "stem.1", (3, 24, 24)),  # a BatchNorm followed by an in-place ReLU
    ("branchy", "mix", (3, 40, 40)),
    ("single_logit", "features.1", (3, 32, 32)),
]


def double_model(arch: str) -> nn.Module:
    return build(arch).double().eval()


def image_of(shape: tuple, seed: int = 21) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize(("arch", "layer", "shape"), CASES)
def test_scorecam_equals_reference(arch: str, layer: str, shape: tuple) -> None:
    model, image = double_model(arch), image_of(shape)
    explanation = ng.explain(model, image[None], method="scorecam", layer=layer, target=1)
    expected = reference_scorecam(model, image, dict(model.named_modules())[layer], 1)
    assert expected.max() > 0
    assert_same_map(explanation.cam[0], expected)


@pytest.mark.parametrize(("arch", "layer", "shape"), CASES)
def test_ablationcam_equals_reference(arch: str, layer: str, shape: tuple) -> None:
    model, image = double_model(arch), image_of(shape)
    explanation = ng.explain(model, image[None], method="ablationcam", layer=layer, target=1)
    expected = reference_ablationcam(model, image, dict(model.named_modules())[layer], 1)
    assert expected.max() > 0
    assert_same_map(explanation.cam[0], expected)


def test_ablationcam_with_a_head_that_reads_earlier_features() -> None:
    # The head adds pooled stem features: replacing only the layer output of a one-image
    # trunk would mix images, so the batch must fall back to full forwards.
    model = LateSkip().double().eval()
    batch = torch.stack([image_of((3, 32, 32), seed) for seed in (1, 2)])
    explanation = ng.explain(model, batch, method="ablationcam", layer="body", target=[0, 1])
    for i, target in enumerate((0, 1)):
        expected = reference_ablationcam(model, batch[i], model.body, target)
        assert expected.max() > 0
        assert_same_map(explanation.cam[i], expected)


@pytest.mark.parametrize("arch", ["resnet", "vgg", "single_logit"])
@pytest.mark.parametrize(("window", "step", "baseline"), [(12, 8, "blur"), (10, 10, "mean")])
def test_occlusion_equals_reference(arch: str, window: int, step: int, baseline: str) -> None:
    model = double_model(arch)
    image = image_of((3, 64, 64) if arch == "vgg" else (3, 34, 30))
    explanation = ng.explain(
        model,
        image[None],
        method="occlusion",
        target=1,
        options=ng.OcclusionOptions(window, step, baseline),
    )
    expected = reference_occlusion(model, image, 1, window, step, blur=baseline == "blur")
    assert expected.max() > 0
    assert_same_map(explanation.cam[0], expected)
    assert explanation.stride == (float(step), float(step))
    assert explanation.layer == "input"


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "occlusion"])
def test_batch_and_chunks_do_not_change_the_map(method: str) -> None:
    model = double_model("resnet")
    batch = torch.stack([image_of((3, 32, 32), seed) for seed in (5, 6, 7)])
    grid = ng.OcclusionOptions(8, 8) if method == "occlusion" else None
    options = {"method": method, "layer": "layer3", "options": grid}
    roomy = ng.explain(model, batch, monitor=ng.Monitor(memory_budget_mb=512), **options)
    tight = ng.explain(model, batch, monitor=ng.Monitor(memory_budget_mb=0.2), **options)
    np.testing.assert_allclose(tight.cam, roomy.cam, rtol=1e-9, atol=1e-12)
    for i in range(len(batch)):
        alone = ng.explain(model, batch[i : i + 1], **options)
        np.testing.assert_allclose(alone.cam[0], roomy.cam[i], rtol=1e-9, atol=1e-12)


def test_occlusion_runs_on_torchscript_models() -> None:
    model = build("resnet").eval()
    scripted = torch.jit.script(model)
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    from_script = ng.explain(scripted, image, method="occlusion", target=2)
    from_python = ng.explain(model, image, method="occlusion", target=2)
    assert from_script.cam.max() > 0
    np.testing.assert_allclose(from_script.cam, from_python.cam, rtol=1e-4, atol=1e-6)
    assert all(p.is_contiguous() for p in scripted.parameters())


def test_forward_methods_build_no_graph() -> None:
    model, image = build("resnet"), torch.randn(1, 3, 32, 32)
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(1) or t, lambda t: t):
        for method in ("scorecam", "ablationcam", "occlusion"):
            ng.explain(model, image, method=method)
    assert saved == [], "masked forwards should run under inference mode"
    assert all(p.is_contiguous() for p in model.parameters()), "weights' layout restored"


class ViewHead(nn.Module):
    """Flattens its feature map with ``.view``: fails on channels-last tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(6 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        return self.fc(features.view(features.shape[0], -1))


def test_a_model_that_cannot_take_channels_last_keeps_its_layout() -> None:
    torch.manual_seed(0)
    model, image = ViewHead().double().eval(), image_of((3, 16, 16))
    with pytest.raises(RuntimeError, match="view"):  # the premise of this test
        model(image[None].contiguous(memory_format=torch.channels_last))
    explanation = ng.explain(model, image[None], method="scorecam", layer="conv", target=2)
    expected = reference_scorecam(model, image, model.conv, 2)
    assert_same_map(explanation.cam[0], expected)
    assert all(p.is_contiguous() for p in model.parameters())


def test_scorecam_when_every_channel_is_constant() -> None:
    # A blank input: each channel is its bias everywhere, so every mask is zero.
    torch.manual_seed(0)
    model, blank = ViewHead().double().eval(), torch.zeros(3, 16, 16, dtype=torch.float64)
    explanation = ng.explain(model, blank[None], method="scorecam", target=1)
    expected = reference_scorecam(model, blank, model.conv, 1)
    assert expected.max() > 0
    assert_same_map(explanation.cam[0], expected)


class Repeats(nn.Module):
    """A layer whose channels 1 and 5 are scaled copies of channel 0 (the same mask)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, :1]
        return torch.cat([first, 4 * first, x[:, 1:], 0.5 * first], dim=1)


def test_channels_with_equal_masks_share_one_masked_forward() -> None:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Repeats())
    head = nn.Sequential(nn.Conv2d(6, 5, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = nn.Sequential(body, head, nn.Linear(5, 3)).double().eval()
    image = image_of((3, 16, 16))
    totals: list[int] = []
    explanation = ng.explain(
        model,
        image[None],
        method="scorecam",
        layer="0",
        target=1,
        monitor=ng.Monitor(progress=lambda _done, total: totals.append(total)),
    )
    assert_same_map(explanation.cam[0], reference_scorecam(model, image, body, 1))
    assert set(totals) == {6 - 2}, "channels 1 and 5 reuse channel 0's masked forward"
