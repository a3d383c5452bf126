"""Eigen-CAM equals a full-SVD reference and needs no gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from tests.architectures import build
from tests.core.reference import reference_eigencam
from tests.core.test_gradcam_reference import assert_same_map


@pytest.mark.parametrize(("arch", "layer"), [("resnet", "layer3"), ("branchy", "mix")])
def test_eigencam_equals_full_svd(arch: str, layer: str) -> None:
    model = build(arch).eval()
    batch = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(6))
    explanation = ng.explain(model, batch, method="eigencam", layer=layer)
    captured = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda _m, _i, out: captured.setdefault("a", out.detach())
    )
    with torch.no_grad():
        model(batch)
    handle.remove()
    for i in range(len(batch)):
        expected = reference_eigencam(captured["a"][i].double().numpy())
        assert expected.max() > 0
        assert_same_map(explanation.cam[i], expected)


def test_eigencam_is_class_agnostic_and_builds_no_graph() -> None:
    model = build("resnet")
    image = torch.randn(1, 3, 32, 32)
    widths: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: widths.append(1) or t, lambda t: t):
        first = ng.explain(model, image, method="eigencam", target=0)
    second = ng.explain(model, image, method="eigencam", target=3)
    np.testing.assert_array_equal(first.cam, second.cam)
    assert second.target_names == ("3",)
    assert widths == [], "Eigen-CAM should run under inference mode"
