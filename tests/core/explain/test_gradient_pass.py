"""The gradient pass in memory-sized chunks: the same maps, targets and logits as one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core.explain import gradient_pass
from napari_gradcam.core.explain.gradient_pass import gradient_chunk, head_profile
from napari_gradcam.core.explain.model_layers import ModelLayers, resolve_layer
from tests.transformers import TinyViT


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 3),
    ).eval()


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return TinyViT(reg_tokens=2).eval()


def explain_in_chunks(monkeypatch, model, x, size, **kwargs) -> ng.Explanation:
    monkeypatch.setattr(gradient_pass, "gradient_chunk", lambda *_: size)
    return ng.explain(model, x, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "gradcam"},
        {"method": "gradcam", "target": [2, 0, 1, 1, 0]},
        {"method": "gradcam++", "target": 1},
        {"method": "gradcam", "tta": True},
        {"method": "layercam", "tta": True, "target": [0, 1, 2, 0, 1]},
    ],
)
@pytest.mark.parametrize("size", [1, 2, 3])
def test_chunks_give_the_one_pass_result(monkeypatch, kwargs, size) -> None:
    model, x = tiny_vit(), torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    whole = explain_in_chunks(monkeypatch, model, x, len(x) * 4, **kwargs)
    chunked = explain_in_chunks(monkeypatch, model, x, size, **kwargs)
    np.testing.assert_array_equal(chunked.targets, whole.targets)
    np.testing.assert_allclose(chunked.logits, whole.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked.cam, whole.cam, rtol=1e-4, atol=1e-6 * whole.cam.max())


def test_tta_copies_explain_the_first_copys_class(monkeypatch) -> None:
    """Top-class targets come from the unflipped images, even when a copy is chunked apart."""
    model, x = tiny_vit(), torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    result = explain_in_chunks(monkeypatch, model, x, 2, method="gradcam", tta=True)
    with torch.no_grad():
        top = model(x).argmax(1).numpy()
    np.testing.assert_array_equal(result.targets, top)


def test_wrong_number_of_targets_is_refused_before_running(monkeypatch) -> None:
    model, x = tiny_vit(), torch.randn(4, 3, 32, 32)
    with pytest.raises(ValueError, match="3 targets given for a batch of 4 images"):
        explain_in_chunks(monkeypatch, model, x, 1, method="gradcam", target=[0, 1, 2])


def test_a_transformer_block_behind_the_layer_splits_the_batch() -> None:
    """Behind blocks[-1].norm1 the graph holds a whole block: more than a forward per image."""
    torch.manual_seed(0)
    model, x = TinyViT(patch_size=4, dim=64).eval(), torch.zeros(8, 3, 32, 32)
    layer = resolve_layer(model, "blocks.1.norm1")
    forward_peak, graph_peak = head_profile(ModelLayers(model), layer, x)
    assert graph_peak > forward_peak
    size = gradient_chunk(ModelLayers(model), layer, x)
    assert size == len(x) * forward_peak // graph_peak
    assert 1 <= size < len(x)


def test_a_pooled_head_behind_the_last_map_keeps_one_pass() -> None:
    model, x = tiny_cnn(), torch.zeros(8, 3, 32, 32)
    layer = resolve_layer(model, "2")
    forward_peak, graph_peak = head_profile(ModelLayers(model), layer, x)
    assert graph_peak < forward_peak / 2
    assert gradient_chunk(ModelLayers(model), layer, x) == len(x)


def test_views_of_the_input_are_not_counted_in_the_graph() -> None:
    """An ``nn.Identity`` after the layer adds nothing; a copying module adds its output."""
    model = tiny_cnn()
    with_identity = nn.Sequential(*model[:3], nn.Identity(), *model[3:]).eval()
    with_copy = nn.Sequential(*model[:3], nn.ReLU(), *model[3:]).eval()
    x = torch.zeros(2, 3, 32, 32)
    base = head_profile(ModelLayers(model), resolve_layer(model, "2"), x)[1]
    identity = head_profile(ModelLayers(with_identity), resolve_layer(with_identity, "2"), x)[1]
    copy = head_profile(ModelLayers(with_copy), resolve_layer(with_copy, "2"), x)[1]
    assert identity == base
    assert copy == base + 16 * 16 * 16 * 4  # the extra ReLU's (16, 16, 16) float32 output
