"""Eigen-CAM equals a full-SVD reference and needs no gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.explain.methods.eigen import top_eigenvector
from tests.architectures import build
from tests.core.explain.test_gradcam_reference import assert_same_map
from tests.core.reference import reference_eigencam
from tests.core.reference_forward import layer_output


@pytest.mark.parametrize(
    ("arch", "layer"),
    [("resnet", "layer3"), ("branchy", "mix"), ("resnet", "stem.1")],  # stem.1: signed (BN)
)
def test_eigencam_equals_full_svd(arch: str, layer: str) -> None:
    model = build(arch).eval()
    batch = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(6))
    explanation = ng.explain(model, batch, method="eigencam", layer=layer)
    module = dict(model.named_modules())[layer]
    for i in range(len(batch)):
        expected = reference_eigencam(layer_output(model, batch[i], module).double().numpy())
        assert expected.max() > 0
        assert_same_map(explanation.cam[i], expected)


def test_top_eigenvector_by_power_steps_or_eigh(monkeypatch) -> None:
    eigh = torch.linalg.eigh
    calls: list[int] = []
    monkeypatch.setattr(torch.linalg, "eigh", lambda m: calls.append(1) or eigh(m))
    generator = torch.Generator().manual_seed(2)
    spread = torch.randn(2, 16, 40, generator=generator, dtype=torch.float64)  # small gap
    peaked = spread.abs() + 1  # non-negative: the mean direction dominates
    for matrix, eigh_calls in ((peaked, 0), (spread, 1)):
        gram = matrix @ matrix.transpose(1, 2)
        expected = eigh(gram)[1][..., -1:]
        found = top_eigenvector(gram)
        signs = (found * expected).sum(dim=1, keepdim=True).sign()
        torch.testing.assert_close(found, expected * signs, rtol=0, atol=1e-9)
        assert len(calls) == eigh_calls


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
