"""The geometry probe of the attention methods: patch grid and stride, without a forward."""

import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.explain.pipeline import map_geometry
from tests.transformers import TinyViT


@pytest.mark.parametrize("method", ["rollout", "attention", "transformer-attribution"])
@pytest.mark.parametrize("size", [(96, 96), (160, 104)])
def test_attention_geometry_matches_the_explanation(method, size) -> None:
    vit = ng.load_model("demo-vit", device="cpu")
    geometry = map_geometry(vit, size, method=method)
    explanation = ng.explain(vit, torch.randn(1, 3, *size), method=method)
    assert geometry.shape == explanation.cam.shape[-2:] == (size[0] // 8, size[1] // 8)
    assert geometry.stride == explanation.stride == (8.0, 8.0)
    assert geometry.layer == explanation.layer


def test_attention_geometry_refuses_a_pooled_transformer_as_explain_does() -> None:
    with pytest.raises(ValueError, match="does not read a class token"):
        map_geometry(TinyViT(global_pool="avg"), (32, 32), method="rollout")
