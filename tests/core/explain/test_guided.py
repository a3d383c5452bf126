"""Guided backpropagation and Guided Grad-CAM equal a copy of the model with guided ReLUs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import napari_gradcam as ng
from tests.architectures import build
from tests.core.explain.test_gradcam_reference import assert_same_map
from tests.core.reference import reference_activations_and_gradients, reference_gradcam
from tests.core.reference_forward import reference_guided_backprop

CASES = [
    ("resnet", "layer3", (3, 40, 48)),  # in-place ReLUs, residual sums
    ("vgg", "features.6", (3, 64, 64)),
    ("branchy", "mix", (3, 40, 40)),  # a Tanh branch: not guided
    ("single_logit", "features.1", (3, 32, 32)),
]


def setup(arch: str, shape: tuple) -> tuple[nn.Module, torch.Tensor]:
    model = build(arch).double().eval()
    image = torch.randn(shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    return model, image


@pytest.mark.parametrize(("arch", "layer", "shape"), CASES)
def test_guided_backprop_equals_reference(arch: str, layer: str, shape: tuple) -> None:
    model, image = setup(arch, shape)
    explanation = ng.explain(model, image[None], method="guidedbackprop", target=1)
    expected = reference_guided_backprop(model, image, 1)
    assert expected.max() > 0
    assert explanation.cam.shape[-2:] == shape[1:] and explanation.stride == (1.0, 1.0)
    assert_same_map(explanation.cam[0], expected)
    plain = reference_plain_input_gradient(model, image, 1)
    assert not np.allclose(expected, plain), "guiding should change the gradients"


@pytest.mark.parametrize(("arch", "layer", "shape"), CASES)
def test_guided_gradcam_equals_reference(arch: str, layer: str, shape: tuple) -> None:
    model, image = setup(arch, shape)
    explanation = ng.explain(model, image[None], method="guided-gradcam", layer=layer, target=1)
    module = dict(model.named_modules())[layer]
    cam = reference_gradcam(*reference_activations_and_gradients(model, image, module, 1))
    upsampled = F.interpolate(
        torch.from_numpy(cam)[None, None], size=shape[1:], mode="bilinear", align_corners=False
    )[0, 0].numpy()
    expected = reference_guided_backprop(model, image, 1) * upsampled
    assert expected.max() > 0
    assert_same_map(explanation.cam[0], expected)


def reference_plain_input_gradient(
    model: nn.Module, image: torch.Tensor, target: int
) -> np.ndarray:
    x = image[None].clone().requires_grad_(True)
    logits = model(x)
    value = logits[0, 0] * (1 if target == 1 else -1) if logits.shape[1] == 1 else logits[0, target]
    value.backward()
    model.zero_grad(set_to_none=True)
    return x.grad[0].abs().amax(dim=0).numpy()


def test_hooks_are_gone_and_nothing_is_kept() -> None:
    model = build("resnet")
    ng.explain(model, torch.randn(1, 3, 32, 32), method="guided-gradcam")
    assert not any(m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


class FunctionalReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("method", ["guidedbackprop", "guided-gradcam"])
def test_a_model_without_relu_modules_is_refused_before_running(method: str) -> None:
    model = FunctionalReLU()
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=r"has none.*functions.*method='gradcam'"):
        ng.explain(model, torch.randn(1, 3, 8, 8), method=method, layer="conv")
    assert calls == [], "the check should come before any forward"
