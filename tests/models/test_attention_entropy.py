"""The ViT demo's training penalty: the mean entropy of the attention rows of every block."""

import math

import pytest
import torch

from napari_gradcam.models.training.attention_entropy import AttentionEntropy
from napari_gradcam.models.vit_demo_net import VitDemoNet


def _written_out_entropy(model: VitDemoNet, x: torch.Tensor) -> torch.Tensor:
    """Run the blocks by hand, computing each head's softmax(q k^T * scale) explicitly."""
    tokens = model._pos_embed(model.patch_embed(x))
    entropies = []
    for block in model.blocks:
        attn = block.attn
        dim = tokens.shape[-1]
        width = dim // attn.num_heads
        q, k, _v = attn.qkv(block.norm1(tokens)).split(dim, dim=-1)
        for h in range(attn.num_heads):
            part = slice(h * width, (h + 1) * width)
            weights = torch.softmax(q[..., part] @ k[..., part].transpose(1, 2) * attn.scale, -1)
            entropies.append(-(weights * weights.log()).sum(-1).mean())
        tokens = block(tokens)
    return torch.stack(entropies).mean()


def test_penalty_is_the_weighted_mean_entropy_of_the_last_training_forward() -> None:
    torch.manual_seed(0)
    model = VitDemoNet(img_size=32, dim=24, depth=2, num_heads=3).train()
    penalty = AttentionEntropy(model, weight=0.5).penalty
    x = torch.randn(2, 3, 32, 32)
    model(x)
    value = penalty()
    torch.testing.assert_close(value, 0.5 * _written_out_entropy(model, x))
    assert 0 < value < 0.5 * math.log(1 + 16)  # below uniform attention's entropy
    value.backward()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_penalty_reads_nothing_in_eval_mode() -> None:
    model = VitDemoNet(img_size=32, dim=24, depth=2, num_heads=3).eval()
    penalty = AttentionEntropy(model, weight=1.0).penalty
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(RuntimeError, match="no training forward"):
        penalty()
