"""One model shared by several threads: each result equals the one computed alone.

A gate module after the target layer holds the first thread's forward until a second thread has
run (or tried to run) the same model, so the overlap that the docks can produce is reproduced
deterministically. Without the per-model lock and thread-owned hooks, the second thread's forward
reaches the first thread's capture hook and fails ("runs more than once per forward pass").
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.model_layers import candidate_layers
from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.explain.preprocess import to_batch
from napari_gradcam.core.trust.faithfulness import deletion_insertion
from napari_gradcam.core.trust.features import feature_stack
from napari_gradcam.core.trust.sanity import sanity_check

CARD = ModelCard(name="gated", classes=("a", "b", "c"), input_size=(32, 32))
HOLD_SECONDS = 1.0


class Hold:
    """The gate's events; copies of the model (sanity checks) share them."""

    def __init__(self) -> None:
        self.armed_thread: int | None = None
        self.holding = threading.Event()
        self.passed = threading.Event()

    def __deepcopy__(self, memo: dict) -> Hold:
        return self

    def arm(self) -> None:
        """Hold the calling thread's next forward at the gate."""
        self.holding.clear()
        self.passed.clear()
        self.armed_thread = threading.get_ident()


class Gate(nn.Module):
    """Identity; in the armed thread's forward it waits until another thread's forward passed."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = Hold()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hold = self.hold
        if threading.get_ident() == hold.armed_thread:
            hold.armed_thread = None
            hold.holding.set()
            hold.passed.wait(HOLD_SECONDS)  # the other thread is locked out until it times out
        else:
            hold.passed.set()
        return x


class GatedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1)
        )
        self.gate = Gate()
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(self.features(x)))


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _gradcam(model: nn.Module, seed: int = 0, method: str = "gradcam") -> np.ndarray:
    return explain(model, _image(seed), method=method, layer="features.2", card=CARD).cam


def _overlap(model: GatedNet, other: Callable[[], object]) -> tuple[np.ndarray, object]:
    """Explain in thread A, held at the gate while thread B runs ``other``; both results."""
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def first() -> None:
        model.gate.hold.arm()
        try:
            results["a"] = _gradcam(model)
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            errors.append(err)
            model.gate.hold.holding.set()

    def second() -> None:
        model.gate.hold.holding.wait(10)
        try:
            results["b"] = other()
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            errors.append(err)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, f"a thread failed: {errors[0]!r}"
    return results["a"], results["b"]


@pytest.fixture
def model() -> GatedNet:
    return GatedNet()


def test_a_plain_forward_in_another_thread_neither_fails_nor_spoils_the_map(model):
    alone = _gradcam(model)
    batch = to_batch(_image(1), CARD, torch.device("cpu"))
    with torch.no_grad():
        expected_logits = model(batch)

    def plain_forward() -> torch.Tensor:
        with torch.no_grad():
            return model(batch)

    cam, logits = _overlap(model, plain_forward)
    np.testing.assert_array_equal(cam, alone)
    torch.testing.assert_close(logits, expected_logits)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam", "ablationcam"])
def test_two_explanations_at_once_each_equal_the_one_computed_alone(model, method):
    alone_a, alone_b = _gradcam(model), _gradcam(model, seed=1, method=method)
    cam_a, cam_b = _overlap(model, lambda: _gradcam(model, seed=1, method=method))
    np.testing.assert_array_equal(cam_a, alone_a)
    np.testing.assert_allclose(cam_b, alone_b, rtol=1e-5, atol=1e-6)


def _feature_maps(model: nn.Module) -> np.ndarray:
    return feature_stack(model, _image(1), layer="features.2", card=CARD).activations


def _curves(model: nn.Module) -> np.ndarray:
    batch = to_batch(_image(1), CARD, torch.device("cpu"))
    saliency = np.random.default_rng(2).random((32, 32))
    return deletion_insertion(model, batch, saliency, 0, steps=4).deletion


def _sanity(model: nn.Module) -> object:
    batch = to_batch(_image(1), CARD, torch.device("cpu"))
    original = explain(model, batch, layer="features.2", card=CARD)
    return sanity_check(model, batch, original, card=CARD, steps=2, repeats=1).verdict


@pytest.mark.parametrize(
    "other",
    [_feature_maps, _curves, _sanity, lambda m: candidate_layers(m, (1, 3, 40, 40))],
    ids=["feature_stack", "deletion_insertion", "sanity_check", "layer_discovery"],
)
def test_checks_beside_an_explanation_leave_both_results_as_alone(model, other):
    alone_a, alone_b = _gradcam(model), other(model)
    cam_a, result_b = _overlap(model, lambda: other(model))
    np.testing.assert_array_equal(cam_a, alone_a)
    if isinstance(alone_b, np.ndarray):
        np.testing.assert_allclose(result_b, alone_b, rtol=1e-5, atol=1e-6)
    else:
        assert result_b == alone_b


def test_the_model_is_left_as_it_was_after_overlapping_calls(model):
    model.train()
    _overlap(model, lambda: _gradcam(model, seed=1))
    assert all(module.training for module in model.modules())
    assert all(param.requires_grad for param in model.parameters())
    assert not any(module._forward_hooks for module in model.modules())


def test_another_model_runs_while_one_is_held(model):
    other_model, finished = GatedNet(), []

    def explain_other() -> None:
        _gradcam(other_model, seed=1)
        finished.append("other")
        model.gate.hold.passed.set()  # release the held thread only after this call finished

    def held() -> np.ndarray:
        model.gate.hold.arm()
        cam = _gradcam(model)
        finished.append("held")
        return cam

    thread = threading.Thread(target=lambda: (model.gate.hold.holding.wait(10), explain_other()))
    thread.start()
    held()
    thread.join(30)
    assert finished == ["other", "held"]
