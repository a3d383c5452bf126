"""The fast path's promises: graph only from the layer, nothing kept, model state restored."""

from __future__ import annotations

import gc

import numpy as np
import torch

import napari_gradcam as ng
from tests.architectures import build
from tests.core.reference import reference_activations_and_gradients


def saved_tensor_widths(run) -> list[int]:
    """Run ``run()`` and return the width of every 4-D tensor autograd saved for backward."""
    widths: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.ndim == 4:
            widths.append(tensor.shape[-1])
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return widths


def test_graph_starts_at_the_target_layer() -> None:
    model = build("resnet")
    image = torch.randn(1, 3, 64, 64)
    # layer3 outputs 8 x 8; everything before it is 16 x 16 or larger.
    fast = saved_tensor_widths(lambda: ng.explain(model, image, layer="layer3"))
    full = saved_tensor_widths(
        lambda: reference_activations_and_gradients(model, image[0], model.layer3, 0)
    )
    assert max(full) > 8, "the reference should save early activations (sanity of the probe)"
    assert fast == [] or max(fast) <= 8


def test_no_parameter_gradients_and_flags_restored() -> None:
    model = build("resnet")
    model.train()
    model.stem[0].weight.requires_grad_(False)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}

    ng.explain(model, torch.randn(2, 3, 32, 32))

    assert all(p.grad is None for p in model.parameters())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(module.training for module in model.modules())


def test_state_restored_when_the_model_fails() -> None:
    model = build("vgg")  # fixed 64 x 64 input: a 96 x 96 input fails in the classifier
    model.train()
    try:
        ng.explain(model, torch.randn(1, 3, 96, 96))
    except ValueError as err:
        assert "failed to run" in str(err)
    else:
        raise AssertionError("expected a ValueError")
    assert all(module.training for module in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules()), "a hook leaked"


def live_autograd_tensors() -> int:
    gc.collect()
    return sum(
        1
        for obj in gc.get_objects()
        if type(obj) is torch.Tensor and (obj.grad_fn is not None or obj.requires_grad)
    )


def test_nothing_retained_after_the_call() -> None:
    model = build("branchy")
    before = live_autograd_tensors()
    explanation = ng.explain(model, torch.randn(2, 3, 40, 40))
    assert live_autograd_tensors() == before
    assert not any(m._forward_hooks for m in model.modules())
    kept = (np.ndarray, str, tuple, dict, bool)
    assert all(isinstance(value, kept) for value in vars(explanation).values())


def test_works_inside_inference_mode() -> None:
    model = build("resnet")
    with torch.inference_mode():
        explanation = ng.explain(model, torch.randn(1, 3, 32, 32))
    assert explanation.cam.max() >= 0


def test_numpy_image_gives_one_map_and_placement(rgb_image, small_card) -> None:
    model = build("resnet")
    explanation = ng.explain(model, rgb_image, card=small_card, origin=(10, 20))
    assert explanation.cam.shape == (12, 10)  # 96 x 80 at stride 8
    assert explanation.stride == (8.0, 8.0)
    assert explanation.origin == (10.0, 20.0)
    assert explanation.input_shape == (96, 80)
    assert explanation.cam.min() >= 0
    assert set(explanation.timings) >= {"preprocess", "capture", "method", "total"}
