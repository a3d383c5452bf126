"""The map's geometry comes from a cheap probe, and equals the real explanation's.

The attention methods' geometry is their patch grid and stride, without a forward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.explain.context import Monitor
from napari_gradcam.core.explain.methods.occlusion import OcclusionOptions
from napari_gradcam.core.explain.pipeline import explain, map_geometry
from napari_gradcam.core.loaded_model import LoadedModel
from tests.architectures import build
from tests.transformers import TinyViT

OCCLUSION = pytest.param("occlusion", marks=pytest.mark.slow)  # hundreds of masked forwards
METHODS = ["gradcam", "scorecam", OCCLUSION, "eigencam", "guided-gradcam", "guidedbackprop"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("name", "size"), [("resnet", (40, 48)), ("branchy", (37, 45))])
def test_the_probe_equals_the_real_map(method, name, size, rng, small_card):
    model = build(name)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    explained = explain(
        model, image, method=method, card=small_card, monitor=Monitor(memory_budget_mb=1)
    )
    geometry = map_geometry(model, size, method=method, card=small_card)
    assert geometry.layer == explained.layer
    assert geometry.shape == explained.cam.shape
    assert geometry.stride == pytest.approx(explained.stride)


@pytest.mark.parametrize(("window", "stride"), [(None, None), (12, 5), (7, None)])
def test_occlusion_geometry_comes_from_its_grid_settings(window, stride, rng, small_card):
    model = build("resnet")
    image = rng.integers(0, 256, (50, 61, 3), dtype=np.uint8)
    options = OcclusionOptions(window, stride)
    explained = explain(model, image, method="occlusion", card=small_card, options=options)
    geometry = map_geometry(model, (50, 61), method="occlusion", card=small_card, options=options)
    assert (geometry.shape, geometry.stride) == (explained.cam.shape, explained.stride)


def test_a_layer_is_probed_once_per_input_size_and_never_explained(small_card):
    model = build("resnet")
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    loaded = LoadedModel(model, small_card, "resnet", "factory")  # its layers keep the probes
    first = map_geometry(loaded, (64, 64), layer="layer2")
    assert len(forwards) == 1
    assert map_geometry(loaded, (64, 64), method="scorecam", layer="layer2")
    assert len(forwards) == 1
    other = map_geometry(loaded, (96, 64), layer="layer2")
    assert len(forwards) == 2
    assert other.shape[0] == first.shape[0] * 3 // 2 and other.stride == first.stride
    assert not any(p.grad is not None for p in model.parameters())


def test_a_wrong_layer_is_refused_before_any_tile(small_card):
    with pytest.raises(ValueError, match="no layer named"):
        map_geometry(build("resnet"), (32, 32), layer="layer9", card=small_card)


@pytest.mark.parametrize("method", ["rollout", "attention", "transformer-attribution", "legrad"])
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
