"""The attention methods on real timm ViTs (random weights, never downloaded), fused attention.

The references read the probabilities of an explicit-softmax copy (``fused_attn = False``) at
each block's ``attn_drop`` (identity in eval mode), with their gradients. Run with the timm
environment: ``/work/main/.venv-timm/bin/python -m pytest -m timm tests/core/explain``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from tests.core.explain.attention_reference import (
    reference_class_attention,
    reference_relevance,
    reference_rollout,
)

timm = pytest.importorskip("timm", reason="timm is not installed (it runs in .venv-timm)")
pytestmark = pytest.mark.timm

MODELS = [  # name, input size, grid, prefix tokens
    ("vit_small_patch16_224", (64, 48), (4, 3), 1),
    ("vit_small_patch14_reg4_dinov2", (56, 42), (4, 3), 5),
]


def explicit_attention(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> tuple:
    """Probabilities and their gradients per block, from an explicit-softmax copy."""
    explicit, kept = copy.deepcopy(model), []

    def keep(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        output.retain_grad()
        kept.append(output)

    for block in explicit.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(keep)
    logits = explicit(x)
    logits[torch.arange(len(targets)), torch.tensor(targets)].sum().backward()
    return [a.detach().double() for a in kept], [a.grad.double() for a in kept]


@pytest.mark.parametrize(("name", "size", "grid", "prefix"), MODELS)
def test_timm_attention_methods_equal_the_papers(name: str, size: tuple, grid: tuple, prefix: int):
    torch.manual_seed(0)
    model = timm.create_model(
        name, pretrained=False, img_size=size, num_classes=5, dynamic_img_size=False
    ).eval()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3))
    targets = [1, 4]
    attentions, gradients = explicit_attention(model, x, targets)
    patch = float(model.patch_embed.patch_size[0])
    expected = {
        "rollout": reference_rollout(attentions, prefix, grid),
        "attention": reference_class_attention(attentions[-1], prefix, grid).mean(dim=1),
        "transformer-attribution": reference_relevance(attentions, gradients, prefix, grid),
    }
    for method, reference in expected.items():
        found = ng.explain(model, x, method=method, target=targets)
        scale = float(reference.abs().max())
        assert scale > 0 and found.cam.shape == reference.shape
        assert np.abs(found.cam - reference.numpy()).max() / scale < 1e-4, method
        assert found.stride == (patch, patch)
    assert all(block.attn.fused_attn for block in model.blocks)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_timm_dynamic_size_and_pooled_models() -> None:
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_small_patch16_224", pretrained=False, img_size=48, num_classes=3, dynamic_img_size=True
    ).eval()
    x = torch.randn(1, 3, 80, 32, generator=torch.Generator().manual_seed(4))
    attentions, _ = explicit_attention(model, x, [0])
    found = ng.explain(model, x, method="rollout", target=0)
    np.testing.assert_allclose(found.cam, reference_rollout(attentions, 1, (5, 2)), rtol=1e-4)
    pooled = timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        img_size=32,
        num_classes=3,
        class_token=False,
        global_pool="avg",
    ).eval()
    with pytest.raises(ValueError, match="class token"):
        ng.explain(pooled, torch.randn(1, 3, 32, 32), method="attention")
