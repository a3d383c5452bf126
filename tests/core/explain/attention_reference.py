"""A tiny ViT with timm's attribute names, and direct slow references of the attention methods.

The ViT attends with fused ``scaled_dot_product_attention`` (timm's default) or, with the same
weights, with an explicit softmax whose probabilities are kept (with their gradient) for the
references. The references loop over images, blocks and heads in float64, written from the
papers' formulas.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """timm's ``Attention`` layout: qkv, q_norm, k_norm, norm, proj; num_heads, scale."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.kept: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            probs = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            if probs.requires_grad:
                probs.retain_grad()
            self.kept = probs
            out = probs @ v
        return self.proj(self.norm(out.transpose(1, 2).reshape(n, tokens, dim)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qk_norm)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.patch_size = (patch, patch)
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TinyViT(nn.Module):
    """Class token (optional), registers (optional), learned position embedding per token."""

    def __init__(
        self,
        *,
        patch: int = 8,
        dim: int = 32,
        heads: int = 4,
        depth: int = 3,
        registers: int = 0,
        class_token: bool = True,
        qk_norm: bool = False,
        n_classes: int = 5,
        max_grid: int = 8,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5) if class_token else None
        self.reg_token = nn.Parameter(torch.randn(1, registers, dim) * 0.5) if registers else None
        self.num_prefix_tokens = int(class_token) + registers
        self.global_pool = "token" if class_token else "avg"
        self.pos_embed = nn.Parameter(torch.randn(1, max_grid * max_grid, dim) * 0.5)
        self.blocks = nn.Sequential(*(Block(dim, heads, qk_norm) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, : x.shape[1]]
        prefix = [
            t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None
        ]
        x = self.norm(self.blocks(torch.cat([*prefix, x], dim=1)))
        return self.head(x[:, 0] if self.cls_token is not None else x.mean(dim=1))


def tiny_vit(seed: int = 0, **kwargs: object) -> TinyViT:
    """A TinyViT with fixed random weights, in eval mode."""
    torch.manual_seed(seed)
    return TinyViT(**kwargs).eval()


def explicit_copy(model: nn.Module) -> nn.Module:
    """The same weights attending with an explicit, kept softmax."""
    explicit = copy.deepcopy(model)
    for module in explicit.modules():
        if isinstance(module, Attention):
            module.fused_attn = False
    return explicit


def attention_and_gradients(
    explicit: nn.Module, images: torch.Tensor, targets: list[int]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each block's probabilities A (N, heads, T, T) and dY/dA, from the explicit softmax."""
    logits = explicit(images)
    logits[torch.arange(len(targets)), torch.tensor(targets)].sum().backward()
    blocks = [m for m in explicit.modules() if isinstance(m, Attention)]
    return [b.kept.detach().double() for b in blocks], [b.kept.grad.double() for b in blocks]


def reference_rollout(
    attentions: list[torch.Tensor], prefix: int, grid: tuple[int, int], discard: float = 0.0
) -> torch.Tensor:
    """Abnar & Zuidema (2020): per image, R = prod_l normalise(mean_h A_l (discarded) + I)."""
    maps = []
    for image in range(len(attentions[0])):
        tokens = attentions[0].shape[-1]
        rollout = torch.eye(tokens, dtype=torch.float64)
        for attention in attentions:
            fused = sum(attention[image, h] for h in range(attention.shape[1])) / attention.shape[1]
            fused = fused.clone()
            for row in range(tokens):  # zero the weakest floor(discard * T) weights of each row
                order = torch.argsort(fused[row])
                fused[row, order[: int(discard * tokens)]] = 0
            fused = fused + torch.eye(tokens, dtype=torch.float64)
            fused = fused / fused.sum(dim=1, keepdim=True)
            rollout = fused @ rollout
        maps.append(rollout[0, prefix:].reshape(grid))
    return torch.stack(maps)


def reference_relevance(
    attentions: list[torch.Tensor], gradients: list[torch.Tensor], prefix: int, grid: tuple
) -> torch.Tensor:
    """Chefer et al. (2021, eq. 5-6): R = I; R += mean_h((dY/dA * A)^+) @ R per block."""
    maps = []
    for image in range(len(attentions[0])):
        tokens = attentions[0].shape[-1]
        relevance = torch.eye(tokens, dtype=torch.float64)
        for attention, gradient in zip(attentions, gradients, strict=True):
            heads = attention.shape[1]
            weighted = [
                (gradient[image, h] * attention[image, h]).clamp(min=0) for h in range(heads)
            ]
            relevance = relevance + (sum(weighted) / heads) @ relevance
        maps.append(relevance[0, prefix:].reshape(grid))
    return torch.stack(maps)


def reference_class_attention(attention: torch.Tensor, prefix: int, grid: tuple) -> torch.Tensor:
    """DINO's figures: the last block's [CLS] row over the patches, per head (N, heads, h, w)."""
    n, heads = attention.shape[:2]
    return torch.stack(
        [
            torch.stack([attention[i, h, 0, prefix:].reshape(grid) for h in range(heads)])
            for i in range(n)
        ]
    )
