"""Tiny transformers built in the tests (never downloaded), with timm's attribute names.

``TinyViT``: patch embedding, ``num_prefix_tokens`` (class, distillation, register tokens),
``blocks[i].norm1 / attn / norm2 / mlp``, a class-token or average-pooled head, an optional
dynamic image size. ``TinySwin``: channels-last (N, h, w, C) stages that halve the patch grid,
``output_fmt = "NHWC"``, an average-pooled head.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping patches to (N, h, w, C) or flattened (N, h * w, C)."""

    def __init__(self, patch_size: int, dim: int, flatten: bool = True) -> None:
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).permute(0, 2, 3, 1)
        return x.flatten(1, 2) if self.flatten else x


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        weights = self.attn_drop((q @ k.transpose(-2, -1) / (c // self.heads) ** 0.5).softmax(-1))
        return self.proj((weights @ v).transpose(1, 2).reshape(n, t, c))


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A ViT; ``global_pool`` "token" reads the class token, "avg" the mean patch token."""

    def __init__(
        self,
        n_classes: int = 3,
        patch_size: int = 8,
        dim: int = 16,
        depth: int = 2,
        global_pool: str = "token",
        class_token: bool = True,
        reg_tokens: int = 0,
        img_size: int = 32,
        dynamic_img_size: bool = False,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.patch = patch_size
        self.global_pool = global_pool
        self.dynamic_img_size = dynamic_img_size
        self.num_prefix_tokens = int(class_token) + reg_tokens
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.randn(1, reg_tokens, dim)) if reg_tokens else None
        grid = img_size // patch_size
        self.pos_embed = nn.Parameter(0.1 * torch.randn(1, dim, grid, grid))
        self.blocks = nn.Sequential(*(Block(dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        pos = self.pos_embed
        if self.dynamic_img_size:
            pos = nn.functional.interpolate(pos, size=(h, w), mode="bilinear")
        tokens = tokens + pos.flatten(2).transpose(1, 2)
        prefix = [
            p.expand(len(x), -1, -1) for p in (self.cls_token, self.reg_token) if p is not None
        ]
        x = self.norm(self.blocks(torch.cat([*prefix, tokens], dim=1)))
        pooled = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens :].mean(1)
        return self.head(pooled)


class SwinStage(nn.Module):
    """Optional 2x2 patch merging, then a channels-last MLP block with LayerNorm."""

    def __init__(self, dim: int, out: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = nn.Linear(4 * dim, out) if downsample else None
        self.norm = nn.LayerNorm(out)
        self.mlp = nn.Sequential(nn.Linear(out, 2 * out), nn.GELU(), nn.Linear(2 * out, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
            x = self.downsample(x)
        return x + self.mlp(self.norm(x))


class TinySwin(nn.Module):
    """Channels-last stages (N, h, w, C) on a patch grid halved per stage; mean-pooled head."""

    def __init__(self, n_classes: int = 3, patch_size: int = 4, dim: int = 8) -> None:
        super().__init__()
        self.output_fmt = "NHWC"
        self.global_pool = "avg"
        self.patch_embed = PatchEmbed(patch_size, dim, flatten=False)
        self.layers = nn.Sequential(
            SwinStage(dim, dim, False),
            SwinStage(dim, 2 * dim, True),
            SwinStage(2 * dim, 4 * dim, True),
        )
        self.norm = nn.LayerNorm(4 * dim)
        self.head = nn.Linear(4 * dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.layers(self.patch_embed(x))).mean(dim=(1, 2)))
