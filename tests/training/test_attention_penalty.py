"""The ViT demo's training penalties: attention entropy and patch-attention locality."""

import math

import pytest
import torch

from napari_gradcam.models.vit_demo_net import VitDemoNet
from napari_gradcam.training.attention_penalty import AttentionPenalty, neighbourhood


def _written_out_attention(model: VitDemoNet, x: torch.Tensor) -> list[torch.Tensor]:
    """Each block's per-head softmax(q k^T * scale), (heads, N, T, T), computed by hand."""
    tokens = model._pos_embed(model.patch_embed(x))
    attentions = []
    for block in model.blocks:
        attn = block.attn
        dim = tokens.shape[-1]
        width = dim // attn.num_heads
        q, k, _v = attn.qkv(block.norm1(tokens)).split(dim, dim=-1)
        heads = []
        for h in range(attn.num_heads):
            part = slice(h * width, (h + 1) * width)
            logits = q[..., part] @ k[..., part].transpose(1, 2) * attn.scale
            heads.append(torch.softmax(logits, -1))
        attentions.append(torch.stack(heads))
        tokens = block(tokens)
    return attentions


def _written_out_near_mass(weights: torch.Tensor, grid: int, radius: int) -> torch.Tensor:
    """Attention mass of each patch row (token 1 + r * grid + c) on patches within ``radius``."""
    masses = []
    for r in range(grid):
        for c in range(grid):
            row = weights[..., 1 + r * grid + c, :]
            near = [
                1 + rr * grid + cc
                for rr in range(grid)
                for cc in range(grid)
                if max(abs(rr - r), abs(cc - c)) <= radius
            ]
            masses.append(row[..., near].sum(-1))
    return torch.stack(masses, dim=-1)


def _entropy(weights: torch.Tensor) -> torch.Tensor:
    return -(weights * weights.log()).sum(-1).mean()


@pytest.fixture
def model() -> VitDemoNet:
    torch.manual_seed(0)
    return VitDemoNet(img_size=32, dim=24, depth=2, num_heads=3).train()


def test_neighbourhood_is_the_chebyshev_ball_over_patch_keys() -> None:
    near = neighbourhood((3, 4), prefix=1, radius=1)
    assert near.shape == (12, 13) and not near[:, 0].any()
    assert near.sum(1).tolist() == [4, 6, 6, 4, 6, 9, 9, 6, 4, 6, 6, 4]
    assert near[5, 1 + 0] and near[5, 1 + 10] and not near[5, 1 + 3]
    assert neighbourhood((3, 4), prefix=2, radius=0)[:, 2:].equal(torch.eye(12, dtype=torch.bool))


def test_penalty_is_the_weighted_sum_over_blocks_of_entropy_and_locality(model) -> None:
    penalty = AttentionPenalty(model, entropy=0.5, locality=0.25, radius=1).penalty
    x = torch.randn(2, 3, 32, 32)
    model(x)
    value = penalty()
    expected = sum(
        0.5 * _entropy(weights) - 0.25 * _written_out_near_mass(weights, 4, 1).log().mean()
        for weights in _written_out_attention(model, x)
    )
    torch.testing.assert_close(value, expected)
    value.backward()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("entropy", "locality"), [(1.0, 0.0), (0.0, 1.0)])
def test_each_term_alone(model, entropy: float, locality: float) -> None:
    penalty = AttentionPenalty(model, entropy=entropy, locality=locality, radius=0).penalty
    x = torch.randn(1, 3, 32, 32)
    model(x)
    value = penalty()  # before the written-out forward, which runs the hooks again
    attentions = _written_out_attention(model, x)
    if entropy:
        expected = sum(_entropy(weights) for weights in attentions)
        assert 0 < expected < 2 * math.log(1 + 16)  # below uniform attention's entropy
    else:
        expected = -sum(_written_out_near_mass(w, 4, 0).log().mean() for w in attentions)
    torch.testing.assert_close(value, expected)


def test_locality_vanishes_when_patches_attend_only_to_their_neighbours(model) -> None:
    terms = AttentionPenalty(model, entropy=0.0, locality=1.0, radius=1)
    logits = torch.zeros(1, 1, 17, 17)
    logits[..., 1:, :] = torch.where(terms.near, 0.0, -1e4)
    torch.testing.assert_close(terms.log_near_mass(logits), torch.zeros(1, 1, 16))


def test_penalty_reads_nothing_in_eval_mode() -> None:
    model = VitDemoNet(img_size=32, dim=24, depth=2, num_heads=3).eval()
    penalty = AttentionPenalty(model, entropy=1.0, locality=1.0).penalty
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(RuntimeError, match="no training forward"):
        penalty()
