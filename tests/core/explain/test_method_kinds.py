"""The registry: every method listed without importing torch, with the kind that it declares."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.explain.methods import METHODS
from tests.architectures import build
from tests.core.explain.test_fast_path import live_autograd_tensors

GRADIENT = {"gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"}
ATTENTION = {"rollout", "attention", "transformer-attribution", "legrad"}
CONVNET_METHODS = sorted(set(METHODS) - ATTENTION)


def test_listing_the_methods_does_not_import_torch() -> None:
    code = (
        "import sys; from napari_gradcam.core.explain.methods import METHODS, get_method; "
        "get_method('occlusion'); assert 'torch' not in sys.modules; print(len(METHODS))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "15"


def test_kinds() -> None:
    assert {name for name, m in METHODS.items() if "gradients" in m.needs} == GRADIENT | {
        "guided-gradcam",
        "transformer-attribution",
        "legrad",
    }
    assert {name for name, m in METHODS.items() if "attention" in m.needs} == ATTENTION
    assert {name for name, m in METHODS.items() if "forwards" in m.needs} == {
        "scorecam",
        "ablationcam",
        "occlusion",
    }
    assert {name for name, m in METHODS.items() if not m.uses_layer} == {
        "guidedbackprop",
        "occlusion",
        *ATTENTION,
    }
    assert [name for name, m in METHODS.items() if not m.needs_hooks] == ["occlusion"]
    assert all(m.reference and m.title for m in METHODS.values())


@pytest.mark.parametrize("method", CONVNET_METHODS)
def test_every_method_gives_a_placed_non_negative_map(method: str, small_card) -> None:
    image = np.random.default_rng(3).random((40, 48, 3)).astype(np.float32)
    explanation = ng.explain(build("resnet"), image, method=method, card=small_card)
    assert explanation.cam.dtype == np.float32 and explanation.cam.min() >= 0
    assert explanation.cam.max() > 0
    rows, cols = explanation.cam.shape
    fy, fx = explanation.stride
    assert rows == -(-40 // fy) and cols == -(-48 // fx)
    assert explanation.method == method


def test_input_level_methods_ignore_the_layer_and_say_so() -> None:
    model, image = build("resnet"), torch.randn(1, 3, 32, 32)
    for method in ("guidedbackprop", "occlusion"):
        explanation = ng.explain(model, image, method=method, layer="no such layer")
        assert explanation.layer == "input"


@pytest.mark.parametrize("method", ["gradcam++", "scorecam", "ablationcam", "guided-gradcam"])
def test_nothing_is_kept_after_any_kind_of_method(method: str) -> None:
    model = build("branchy")
    before = live_autograd_tensors()
    ng.explain(model, torch.randn(2, 3, 24, 24), method=method)
    assert live_autograd_tensors() == before
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
