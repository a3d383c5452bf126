"""Layers of a model: discovery, resolution, layouts decided from declarations and shapes (never
guessed) with their conversions, token facts, strides, and the per-model cache."""

from __future__ import annotations

import gc
import importlib
import pkgutil
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core import explain as explain_package
from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.layout import Layout
from napari_gradcam.core.explain.model_layers import (
    ModelLayers,
    TokenFacts,
    candidate_layers,
    infer_stride,
    layer_layout,
    model_layers,
    vit_facts,
)
from napari_gradcam.core.explain.pipeline import map_geometry
from napari_gradcam.core.loaded_model import LoadedModel
from tests.architectures import ResNetLike, build
from tests.transformers import PatchEmbed, TinySwin, TinyViT


def outputs(model: nn.Module, size: tuple[int, int], n: int = 2) -> dict[str, object]:
    seen: dict[str, object] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
        for name, module in model.named_modules()
        if name
    ]
    with torch.no_grad():
        model.eval()(torch.randn(n, 3, *size))
    for handle in handles:
        handle.remove()
    return seen


def test_tokens_drop_prefix_and_reshape_row_major() -> None:
    layout = Layout("tokens", (2, 3), prefix_tokens=2)
    tokens = torch.arange(2 * 8 * 4, dtype=torch.float32).reshape(2, 8, 4)
    nchw = layout.to_nchw(tokens)
    assert nchw.shape == (2, 4, 2, 3)
    # patch token 2 + 1 * 3 + 2 is cell (1, 2)
    assert torch.equal(nchw[1, :, 1, 2], tokens[1, 2 + 5])
    back = layout.from_nchw(nchw, like=tokens)
    assert torch.equal(back, tokens)


def test_from_nchw_keeps_prefix_tokens_of_like() -> None:
    layout = Layout("tokens", (2, 2), prefix_tokens=1)
    like = torch.randn(3, 5, 4)
    changed = layout.to_nchw(like).clone()
    changed[:, 1] = 0
    back = layout.from_nchw(changed, like=like)
    assert torch.equal(back[:, 0], like[:, 0])
    assert torch.all(back[:, 1:, 1] == 0)
    assert torch.equal(back[:, 1:, 0], like[:, 1:, 0])


def test_nhwc_permutes_both_ways() -> None:
    layout = Layout("nhwc", (3, 5))
    x = torch.randn(2, 3, 5, 7)
    assert torch.equal(layout.to_nchw(x), x.permute(0, 3, 1, 2))
    assert torch.equal(layout.from_nchw(layout.to_nchw(x), like=x), x)


def test_vit_layers_are_tokens_with_their_prefix() -> None:
    model = TinyViT(reg_tokens=4)
    seen = outputs(model, (32, 32))
    layout = layer_layout(model, "blocks.1.norm1", seen["blocks.1.norm1"], (32, 32), 2)
    assert layout == Layout("tokens", (4, 4), prefix_tokens=5, stride=(8.0, 8.0))
    assert layout.label() == "tokens 4x4"


@pytest.mark.parametrize("name", ["blocks.0.attn.attn_drop", "head"])
def test_attention_weights_and_logits_are_refused(name: str) -> None:
    model = TinyViT()
    seen = outputs(model, (32, 32))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")) as info:
        layer_layout(model, name, seen[name], (32, 32), 2)
    assert str(tuple(seen[name].shape)) in str(info.value)


def test_dynamic_non_square_grid() -> None:
    model = TinyViT(dynamic_img_size=True, global_pool="avg", class_token=False)
    seen = outputs(model, (40, 24))
    layout = layer_layout(model, "blocks.1", seen["blocks.1"], (40, 24), 2)
    assert layout == Layout("tokens", (5, 3), prefix_tokens=0, stride=(8.0, 8.0))


def test_swin_stages_are_channels_last_on_halved_grids() -> None:
    model = TinySwin()
    seen = outputs(model, (32, 32))
    found = {
        name: layer_layout(model, name, seen[name], (32, 32), 2)
        for name in ("layers.0", "layers.2", "norm")
    }
    assert found["layers.0"] == Layout("nhwc", (8, 8), 0, (4.0, 4.0))
    assert found["layers.2"] == Layout("nhwc", (2, 2), 0, (16.0, 16.0))
    assert found["norm"].label() == "NHWC 2x2"


def test_a_cube_shaped_output_is_read_by_its_module() -> None:
    """(N, 8, 8, 8): NCHW from a convolution, NHWC from a LayerNorm (the model says NHWC)."""
    model = TinySwin()
    seen = outputs(model, (32, 32))
    proj = layer_layout(model, "patch_embed.proj", seen["patch_embed.proj"], (32, 32), 2)
    norm = layer_layout(model, "layers.0.norm", seen["layers.0.norm"], (32, 32), 2)
    assert (proj.kind, norm.kind) == ("nchw", "nhwc")


def test_tokens_without_declarations_are_refused() -> None:
    model = TinyViT()
    del model.patch_embed.patch_size
    seen = outputs(model, (32, 32))
    with pytest.raises(
        ValueError, match=r"'blocks.1' outputs \(2, 17, 16\).*declares no patch size"
    ):
        layer_layout(model, "blocks.1", seen["blocks.1"], (32, 32), 2)


def test_wrong_prefix_count_is_refused() -> None:
    model = TinyViT()
    model.num_prefix_tokens = 2  # declares two, has one
    seen = outputs(model, (32, 32))
    with pytest.raises(ValueError, match="17 tokens are not 2 prefix tokens"):
        layer_layout(model, "blocks.1", seen["blocks.1"], (32, 32), 2)


def test_batch_axis_must_be_the_batch() -> None:
    model = TinyViT()
    with pytest.raises(ValueError, match="not the batch of 2"):
        layer_layout(model, "blocks.1", torch.zeros(6, 17, 16), (32, 32), 2)


def test_convolutional_maps_stay_nchw_and_convnext_style_internals_are_nhwc() -> None:
    model = ResNetLike()
    seen = outputs(model, (64, 64))
    assert layer_layout(model, "layer3", seen["layer3"], (64, 64), 2) == Layout("nchw", (8, 8))
    norm = nn.Sequential(nn.Conv2d(3, 96, 4, stride=4), nn.LayerNorm(96))
    # a LayerNorm over the channels of a permuted map: (N, 8, 8, 96) on a 32 x 32 input
    assert layer_layout(norm, "1", torch.zeros(2, 8, 8, 96), (32, 32), 2).kind == "nhwc"
    with pytest.raises(ValueError, match="no spatial map"):
        layer_layout(norm, "0", torch.zeros(2, 5, 300, 2), (32, 32), 2)


def test_facts_of_a_wrapped_backbone_and_hugging_face_names() -> None:
    probe = nn.Sequential()
    probe.backbone = TinyViT(reg_tokens=2)
    probe.fc = nn.Linear(16, 2)
    facts = vit_facts(probe, "backbone.blocks.0")
    assert (facts.patch_size, facts.prefix_tokens, facts.module) == ((8, 8), 3, "backbone")
    assert vit_facts(probe, "fc") is None
    assert vit_facts(ResNetLike()) is None
    loaded = LoadedModel(probe, ModelCard(input_size=(32, 32)), "probe", "factory")
    assert vit_facts(loaded, "backbone.blocks.0") == facts

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
            self.register_tokens = nn.Parameter(torch.zeros(1, 4, 8))

    hf = nn.Module()
    hf.config = SimpleNamespace(patch_size=14, num_register_tokens=4)
    hf.embeddings = Embeddings()
    assert vit_facts(hf) == TokenFacts((14, 14), 5)
    assert vit_facts(hf).grid((224, 160)) == (16, 11)


def test_candidate_layers_in_execution_order() -> None:
    names = ng.candidate_layers(build("resnet"), (1, 3, 64, 64))
    assert names[-1] == "layer3"
    assert names.index("stem") < names.index("layer1") < names.index("layer2.body")
    assert "pool" not in names  # 1 x 1 output


def test_default_layer_is_the_last_spatial_one() -> None:
    explanation = ng.explain(build("branchy"), np.random.default_rng(0).random((48, 48, 3)))
    assert explanation.layer == "mix"


def test_card_default_layer_wins(small_card) -> None:
    from dataclasses import replace

    card = replace(small_card, default_layer="layer2")
    explanation = ng.explain(build("resnet"), np.random.default_rng(0).random((32, 32)), card=card)
    assert explanation.layer == "layer2"
    assert explanation.stride == (4.0, 4.0)


def test_layer_given_as_module() -> None:
    model = build("resnet")
    explanation = ng.explain(
        model, np.random.default_rng(0).random((64, 64, 3)), layer=model.layer1
    )
    assert explanation.layer == "layer1"


@pytest.mark.parametrize(
    ("size", "cells", "stride"),
    [(224, 7, 32.0), (100, 12, 8.0), (100, 13, 8.0), (64, 64, 1.0), (10, 4, 2.5)],
)
def test_infer_stride(size: int, cells: int, stride: float) -> None:
    assert infer_stride(size, cells) == stride


def counted(model: nn.Module) -> list[int]:
    """A list that grows by one per forward of ``model``."""
    forwards: list[int] = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    return forwards


def test_a_loaded_model_keeps_its_answers_and_clear_forgets_them(small_card) -> None:
    model = build("resnet")
    forwards = counted(model)
    loaded = LoadedModel(model, small_card, "resnet", "factory")
    first = ng.candidate_layers(loaded)
    assert ng.candidate_layers(loaded) == first and len(forwards) == 1
    loaded.layers.clear()
    assert ng.candidate_layers(loaded) == first and len(forwards) == 2


def test_a_bare_module_keeps_its_answers_until_it_changes() -> None:
    model = build("resnet")
    forwards = counted(model)
    candidate_layers(model, (1, 3, 32, 32))
    candidate_layers(model, (1, 3, 32, 32))
    assert len(forwards) == 1  # a second explain of the same module runs no dry forward
    model.layer3 = nn.Sequential(model.layer3, nn.AvgPool2d(2))
    assert "layer3.1" in candidate_layers(model, (1, 3, 32, 32))
    model_layers(model).clear()
    candidate_layers(model, (1, 3, 32, 32))
    assert len(forwards) == 3
    gone = weakref.ref(model)
    del model, forwards
    gc.collect()
    assert gone() is None  # its layers do not keep the module alive


def test_a_layer_replaced_in_place_gives_fresh_answers(small_card) -> None:
    model = build("resnet")
    loaded = LoadedModel(model, small_card, "resnet", "factory")
    assert "layer3" in ng.candidate_layers(loaded)
    before = map_geometry(loaded, (64, 64), layer="layer3")
    model.layer3 = nn.Sequential(model.layer3, nn.AvgPool2d(2))  # halves the last map
    assert "layer3.1" in ng.candidate_layers(loaded)
    after = map_geometry(loaded, (64, 64), layer="layer3")
    assert after.shape == (before.shape[0] // 2, before.shape[1] // 2)
    assert after.stride == (2 * before.stride[0], 2 * before.stride[1])


def test_a_patch_size_changed_in_place_gives_fresh_layouts() -> None:
    torch.manual_seed(0)
    vit = TinyViT(dynamic_img_size=True).eval()
    layers = ModelLayers(vit)
    assert layers.layout("blocks.1", (1, 3, 32, 32)).grid == (4, 4)
    vit.patch_embed, vit.patch = PatchEmbed(4, 16), 4
    layout = layers.layout("blocks.1", (1, 3, 32, 32))
    assert (layout.grid, layout.stride) == ((8, 8), (4.0, 4.0))
    assert layers.default((1, 3, 32, 32)) == "blocks.1.norm1"


def test_no_module_keeps_a_global_cache_of_models() -> None:
    """Per-model answers live in ``ModelLayers``; only its registry of bare modules and the
    per-model locks are global, both weakly keyed by the module."""
    found = []
    for info in pkgutil.walk_packages(explain_package.__path__, f"{explain_package.__name__}."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, weakref.WeakKeyDictionary | weakref.WeakValueDictionary):
                found.append(f"{info.name}.{name}")
    assert sorted(found) == [
        "napari_gradcam.core.explain.hooks._LOCKS",
        "napari_gradcam.core.explain.model_layers._BARE_MODULE_LAYERS",
    ]
