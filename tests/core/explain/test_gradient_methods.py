"""Grad-CAM++, XGrad-CAM, LayerCAM and HiResCAM equal slow references of their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from tests.architectures import build
from tests.core import reference
from tests.core.explain.test_fast_path import saved_tensor_widths
from tests.core.explain.test_gradcam_reference import assert_same_map
from tests.core.reference import reference_activations_and_gradients

REFERENCES = {
    "gradcam++": reference.reference_gradcam_plus_plus,
    "xgradcam": reference.reference_xgradcam,
    "layercam": reference.reference_layercam,
    "hirescam": reference.reference_hirescam,
}
CASES = [
    ("vgg", "features.6", (3, 64, 64)),
    ("resnet", "layer3", (3, 48, 40)),
    ("resnet", "layer2.body.0", (3, 40, 40)),
    ("branchy", "mix", (3, 40, 48)),
    ("single_logit", "features.1", (3, 32, 32)),
]


@pytest.mark.parametrize("method", sorted(REFERENCES))
@pytest.mark.parametrize(("arch", "layer", "shape"), CASES)
def test_method_equals_reference(method: str, arch: str, layer: str, shape: tuple) -> None:
    model = build(arch)
    image = torch.randn(shape, generator=torch.Generator().manual_seed(11))
    target = 1
    explanation = ng.explain(model, image[None], method=method, layer=layer, target=target)
    module = dict(model.named_modules())[layer]
    activation, gradient = reference_activations_and_gradients(model, image, module, target)
    expected = REFERENCES[method](activation, gradient)
    assert expected.max() > 0, "degenerate case: the reference map is all zero"
    assert_same_map(explanation.cam[0], expected)


def test_the_variants_differ_where_gradients_vary_in_space() -> None:
    # A flattening head gives spatially varying gradients: the four weightings disagree.
    model, image = (
        build("vgg"),
        torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)),
    )
    maps = {
        m: ng.explain(model, image, method=m, target=0).cam[0] for m in ["gradcam", *REFERENCES]
    }
    names = sorted(maps)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not np.allclose(maps[first], maps[second], rtol=1e-3), (first, second)


@pytest.mark.parametrize("method", sorted(REFERENCES))
def test_gradient_methods_keep_the_fast_path(method: str) -> None:
    model, image = build("resnet"), torch.randn(1, 3, 64, 64)
    widths = saved_tensor_widths(lambda: ng.explain(model, image, method=method, layer="layer3"))
    assert widths == [] or max(widths) <= 8  # layer3 is 8 x 8; earlier layers are wider
    assert all(p.grad is None for p in model.parameters())
