"""Real timm architectures (random weights, never downloaded): layouts, defaults, placement.

Grad-CAM at token and channels-last layers is checked against pytorch-grad-cam given the
right ``reshape_transform`` (written here, independently of ``model_layers``). Run with the env
that has timm: ``.venv-timm/bin/python -m pytest -m timm tests/core/explain``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import napari_gradcam as ng
from tests.grad_cam_reference import class_score, reference_gradcam, tokens_to_nchw

pytestmark = pytest.mark.timm
timm = pytest.importorskip("timm", reason="timm (and torchvision) are not installed here")
pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")


def build(name: str, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=4, **kwargs).eval()


def nhwc_to_nchw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 3, 1, 2)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


SMALL_SWIN = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}
"""Swin-T's architecture (windows, shifts, merging, NHWC stages), narrower and shallower."""

CASES = [
    # (model, kwargs, input (H, W), layer, reshape, map grid)
    (
        "vit_small_patch16_224",
        {"img_size": 64},
        (64, 64),
        "blocks.11.norm1",
        tokens_to_nchw(1, (4, 4)),
        (4, 4),
    ),
    (
        "deit_small_distilled_patch16_224",
        {"img_size": 64},
        (64, 64),
        "blocks.11.norm1",
        tokens_to_nchw(2, (4, 4)),
        (4, 4),
    ),
    (
        "vit_small_patch14_reg4_dinov2",
        {"img_size": 56},
        (56, 56),
        "blocks.11.norm1",
        tokens_to_nchw(5, (4, 4)),
        (4, 4),
    ),
    (
        "vit_small_patch16_224",
        {"img_size": 64, "global_pool": "avg", "class_token": False, "dynamic_img_size": True},
        (80, 48),
        "blocks.11",
        tokens_to_nchw(0, (5, 3)),
        (5, 3),
    ),
    ("swin_tiny_patch4_window7_224", SMALL_SWIN, (224, 224), "layers.3", nhwc_to_nchw, (7, 7)),
    (
        "swin_tiny_patch4_window7_224",
        SMALL_SWIN,
        (224, 224),
        "layers.2.blocks.0.norm1",
        nhwc_to_nchw,
        (14, 14),
    ),
    ("convnext_tiny", {}, (64, 64), "stages.3.blocks.2.norm", nhwc_to_nchw, (2, 2)),
    ("convnext_tiny", {}, (64, 64), "stages.2", None, (4, 4)),
    ("efficientnet_b0", {}, (64, 64), "conv_head", None, (2, 2)),
]


@pytest.mark.parametrize(("name", "kwargs", "size", "layer", "reshape", "grid"), CASES)
def test_gradcam_matches_pytorch_grad_cam(name, kwargs, size, layer, reshape, grid) -> None:
    model = build(name, **kwargs)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    ours = ng.explain(model, x, method="gradcam", layer=layer, target=[1, 2])
    assert ours.cam.shape == (2, *grid)
    for image, target in enumerate((1, 2)):
        one = x[image : image + 1]
        expected = reference_gradcam(model, one, layer, reshape, class_score(target))[0]
        assert expected.std() > 0
        assert correlation(ours.cam[image], expected) >= 0.99
        np.testing.assert_allclose(ours.cam[image], expected, rtol=1e-3, atol=1e-5 * expected.max())


DEFAULTS = [
    ("vit_small_patch16_224", {"img_size": 64}, (64, 64), {"blocks.11.norm1"}, 16.0),
    ("deit_small_distilled_patch16_224", {"img_size": 64}, (64, 64), {"blocks.11.norm1"}, 16.0),
    ("vit_small_patch14_reg4_dinov2", {"img_size": 56}, (56, 56), {"blocks.11.norm1"}, 14.0),
    (
        "vit_small_patch16_224",
        {"img_size": 64, "global_pool": "avg", "class_token": False},
        (64, 64),
        {"norm", "blocks.11"},
        16.0,
    ),
    ("swin_tiny_patch4_window7_224", SMALL_SWIN, (224, 224), {"norm", "layers.3"}, 32.0),
    ("convnext_tiny", {}, (64, 64), {"norm_pre", "stages.3"}, 32.0),
    ("efficientnet_b0", {}, (64, 64), {"bn2", "conv_head"}, 32.0),
]


@pytest.mark.parametrize(("name", "kwargs", "size", "layers", "stride"), DEFAULTS)
def test_default_map_lies_on_the_grid_and_varies(name, kwargs, size, layers, stride) -> None:
    model = build(name, **kwargs)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
    result = ng.explain(model, x)
    assert result.layer in layers
    assert result.stride == (stride, stride)
    assert result.cam.shape[-2:] == (size[0] // stride, size[1] // stride)
    assert result.cam.std() > 0


def test_class_token_head_last_block_is_refused_not_drawn_empty() -> None:
    model = build("vit_small_patch16_224", img_size=64)
    with pytest.raises(
        ValueError, match=r"no gradient from the patch tokens of layer 'blocks\.11'"
    ):
        ng.explain(model, torch.randn(1, 3, 64, 64), layer="blocks.11")


def test_dynamic_non_square_input_places_exactly() -> None:
    model = build("vit_small_patch16_224", dynamic_img_size=True)
    x = torch.randn(1, 3, 224, 160, generator=torch.Generator().manual_seed(3))
    result = ng.explain(model, x, layer="blocks.11.norm1", origin=(100.0, 40.0))
    assert result.cam.shape == (1, 14, 10)
    assert result.stride == (16.0, 16.0)
    assert result.origin == (100.0, 40.0)


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        ("blocks.11.attn.k_norm", r"'blocks.11.attn.k_norm' outputs \(1, 6, 17, 64\)"),
        ("blocks.11.attn.qkv", None),  # tokens with 3 x 384 channels: a valid token map
    ],
)
def test_undeterminable_layout_is_refused_with_name_and_shape(
    layer: str, match: str | None
) -> None:
    model = build("vit_small_patch16_224", img_size=64)
    x = torch.randn(1, 3, 64, 64)
    if match is None:
        assert ng.explain(model, x, layer=layer).cam.shape == (1, 4, 4)
        return
    with pytest.raises(ValueError, match=match):
        ng.explain(model, x, layer=layer)


def test_tokens_of_an_undeclared_transformer_are_refused() -> None:
    model = build("vit_small_patch16_224", img_size=64)
    del model.patch_embed.patch_size
    with pytest.raises(
        ValueError, match=r"'blocks.11.norm1' outputs \(1, 17, 384\).*no patch size"
    ):
        ng.explain(model, torch.randn(1, 3, 64, 64), layer="blocks.11.norm1")


METHOD_CASES = [
    *(
        ("vit_small_patch14_reg4_dinov2", {"img_size": 56}, (56, 56), method)
        for method in (
            "gradcam++",
            "xgradcam",
            "layercam",
            "hirescam",
            "scorecam",
            "ablationcam",
            "eigencam",
        )
    ),
    # the gradient variants share Swin's capture with Grad-CAM, checked above
    *(
        ("swin_tiny_patch4_window7_224", SMALL_SWIN, (224, 224), method)
        for method in ("scorecam", "ablationcam", "eigencam")
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "size", "method"), METHOD_CASES)
def test_every_cam_method_runs_on_tokens_and_channels_last(name, kwargs, size, method) -> None:
    model = build(name, **kwargs)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(4))
    result = ng.explain(model, x, method=method, monitor=ng.Monitor(memory_budget_mb=512))
    grid = (size[0] // 14, size[1] // 14) if "dinov2" in name else (7, 7)
    assert result.cam.shape == (1, *grid)
    assert np.isfinite(result.cam).all() and result.cam.max() > 0
