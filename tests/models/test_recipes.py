"""Weights without pickle, timm specs and probe recipes (a head on a frozen backbone)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from napari_gradcam import explain, load_model
from napari_gradcam.models.probe import build_head
from napari_gradcam.models.weights import read_state_dict

BACKBONE_SOURCE = '''
import torch
from torch import nn


class Backbone(nn.Module):
    """Conv trunk pooled to a (N, 12) embedding, like a foundation model with num_classes=0."""

    def __init__(self, width=12):
        super().__init__()
        self.num_features = width
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.features(x)), 1)


def backbone(width=12):
    torch.manual_seed(1)
    return Backbone(width)
'''


@pytest.fixture
def backbone_file(tmp_path):
    path = tmp_path / "backbone.py"
    path.write_text(textwrap.dedent(BACKBONE_SOURCE))
    return path


def _recipe(tmp_path, backbone_file, head: dict, **backbone) -> object:
    recipe = {
        "card": {"name": "probe", "classes": ["a", "b"], "input_size": [32, 32]},
        "backbone": {"spec": f"{backbone_file}:backbone", **backbone},
        "head": head,
    }
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(recipe))
    return path


def test_safetensors_and_nested_checkpoints_read_as_the_same_state_dict(tmp_path):
    state = nn.Linear(3, 2).state_dict()
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        read = read_state_dict(tmp_path / name)
        assert set(read) == set(state)
        for key in state:
            torch.testing.assert_close(read[key], state[key])


def test_a_pickled_module_is_never_read_as_weights(tmp_path):
    torch.save(nn.Linear(3, 2), tmp_path / "module.pt")
    with pytest.raises(ValueError, match="needs unpickling"):
        read_state_dict(tmp_path / "module.pt")


def test_a_recipe_builds_backbone_and_head_with_their_weights(tmp_path, backbone_file):
    trained_head = build_head([12, 5, 2], "relu")
    save_file(trained_head.state_dict(), tmp_path / "head.safetensors")
    original = load_model(f"{backbone_file}:backbone").module.state_dict()
    backbone_weights = {k: v + 0.5 for k, v in original.items()}
    save_file(backbone_weights, tmp_path / "backbone.safetensors")
    path = _recipe(
        tmp_path,
        backbone_file,
        {"layers": [12, 5, 2], "activation": "relu", "weights": "head.safetensors"},
        weights="backbone.safetensors",
    )
    loaded = load_model(str(path), trust_code=True, device="cpu")
    assert loaded.kind == "recipe" and loaded.card.classes == ("a", "b")
    x = torch.rand(2, 3, 32, 32)
    reference = load_model(f"{backbone_file}:backbone").module
    reference.load_state_dict(backbone_weights)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), trained_head(reference(x)))


def test_a_single_linear_head_saved_under_its_own_names_is_matched_by_shape(
    tmp_path, backbone_file
):
    linear = nn.Linear(12, 2)
    torch.save({"weight": linear.weight.data, "bias": linear.bias.data}, tmp_path / "head.pt")
    path = _recipe(tmp_path, backbone_file, {"layers": [12, 2], "weights": "head.pt"})
    head = load_model(str(path), trust_code=True, device="cpu").module.head
    torch.testing.assert_close(head[0].weight, linear.weight)
    torch.testing.assert_close(head[0].bias, linear.bias)


def test_head_weights_of_other_shapes_are_refused_with_the_shapes(tmp_path, backbone_file):
    torch.save(nn.Linear(12, 3).state_dict(), tmp_path / "head.pt")
    path = _recipe(tmp_path, backbone_file, {"layers": [12, 2], "weights": "head.pt"})
    with pytest.raises(ValueError, match=r"shapes \[\(2, 12\)\].*\[\(3, 12\)\]"):
        load_model(str(path), trust_code=True)


def test_a_head_that_does_not_take_the_embedding_width_is_refused(tmp_path, backbone_file):
    path = _recipe(tmp_path, backbone_file, {"layers": [768, 2]})
    with pytest.raises(ValueError, match=r"12-d embeddings.*takes 768"):
        load_model(str(path), trust_code=True)


def test_backbone_construction_arguments_reach_the_factory(tmp_path, backbone_file):
    path = _recipe(tmp_path, backbone_file, {"layers": [16, 2]}, kwargs={"width": 16})
    assert load_model(str(path), trust_code=True).module.backbone.num_features == 16


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"card": {}}, "needs 'backbone' and 'head'"),
        ({"backbone": {}, "head": {}}, "has no 'backbone.spec'"),
        ({"backbone": {"spec": "x:y"}, "head": {}, "extra": 1}, "unknown keys"),
    ],
)
def test_malformed_recipes_say_what_is_missing(tmp_path, recipe, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(recipe))
    with pytest.raises(ValueError, match=message):
        load_model(str(path))


def test_gradcam_explains_a_layer_inside_the_backbone(tmp_path, backbone_file):
    path = _recipe(tmp_path, backbone_file, {"layers": [12, 2]})
    loaded = load_model(str(path), trust_code=True, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result = explain(loaded, image)
    assert result.layer == "backbone.features"  # the last module with a spatial output
    assert result.cam.shape == (16, 16)


def test_a_timm_spec_without_timm_says_how_to_get_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ValueError, match=r"timm cannot be imported here.*torchvision"):
        load_model("timm:vit_small_patch16_224")


@pytest.mark.timm
def test_timm_architecture_with_weights_from_a_file_matches_the_original(tmp_path):
    timm = pytest.importorskip("timm", reason="runs in .venv-timm (make test)")
    original = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64).eval()
    save_file(original.state_dict(), tmp_path / "vit.safetensors")
    recipe = {
        "card": {"name": "vit", "input_size": [64, 64]},
        "backbone": {
            "spec": "timm:vit_tiny_patch16_224",
            "kwargs": {"img_size": 64, "num_classes": 0},
            "weights": "vit.safetensors",
        },
        "head": {"layers": [192, 3]},
    }
    # the head is new; the backbone's own classifier weights are not part of the recipe
    state = {k: v for k, v in original.state_dict().items() if not k.startswith("head.")}
    save_file(state, tmp_path / "vit.safetensors")
    (tmp_path / "probe.json").write_text(json.dumps(recipe))
    loaded = load_model(str(tmp_path / "probe.json"), device="cpu")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        pooled = original.forward_head(original.forward_features(x), pre_logits=True)
        torch.testing.assert_close(loaded.module.backbone(x), pooled)
    with pytest.raises(ValueError, match="closest: vit_small_patch16_224"):
        load_model("timm:vit_smal_patch16_224")


def test_token_pooling_takes_class_and_patch_tokens_apart():
    from napari_gradcam.models.probe import pool_tokens

    tokens = torch.rand(2, 1 + 4 + 9, 6)  # class token, 4 registers, 3 x 3 patches
    pooled = pool_tokens(tokens, 5, "token+avg")
    torch.testing.assert_close(pooled[:, :6], tokens[:, 0])
    torch.testing.assert_close(pooled[:, 6:], tokens[:, 5:].mean(dim=1))
    with pytest.raises(ValueError, match="has none"):
        pool_tokens(tokens, 0, "token")
    with pytest.raises(ValueError, match="already pools"):
        pool_tokens(tokens[:, 0], 1, "avg")


def test_construction_arguments_can_name_python_objects(tmp_path, backbone_file):
    from napari_gradcam.models.probe import resolve_imports

    assert resolve_imports({"act": {"import": "torch.nn.SiLU"}, "n": 2}) == {
        "act": nn.SiLU,
        "n": 2,
    }
    with pytest.raises(ValueError, match="cannot import"):
        resolve_imports({"act": {"import": "torch.nn.NoSuchLayer"}})


@pytest.mark.timm
def test_a_virchow2_style_recipe_pools_class_and_patch_tokens(tmp_path):
    timm = pytest.importorskip("timm", reason="runs in .venv-timm (make test)")
    kwargs = {
        "img_size": 64,
        "num_classes": 0,
        "reg_tokens": 4,
        "global_pool": "",
        "mlp_ratio": 5.3375,
        "act_layer": "silu",
        "dynamic_img_size": True,
    }
    original = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, mlp_layer=timm.layers.SwiGLUPacked, **kwargs
    ).eval()
    save_file(original.state_dict(), tmp_path / "backbone.safetensors")
    recipe = {
        "card": {"name": "virchow2-like", "input_size": [64, 64]},
        "backbone": {
            "spec": "timm:vit_tiny_patch16_224",
            "kwargs": {**kwargs, "mlp_layer": {"import": "timm.layers.SwiGLUPacked"}},
            "weights": "backbone.safetensors",
            "pool": "token+avg",
        },
        "head": {"layers": [384, 2]},
    }
    (tmp_path / "probe.json").write_text(json.dumps(recipe))
    loaded = load_model(str(tmp_path / "probe.json"), device="cpu")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        tokens = original(x)
        expected = loaded.module.head(torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], dim=1))
        torch.testing.assert_close(loaded.module(x), expected)
