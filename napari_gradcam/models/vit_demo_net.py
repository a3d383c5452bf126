"""The bundled ViT demo classifier: a small Vision Transformer in plain torch.

A class token and 8 x 8 px patches (a 12 x 12 grid on 96 px tiles), pre-norm transformer
blocks and a linear head on the class token. Attribute names follow timm's
``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``num_prefix_tokens``, ``blocks[i].norm1 / attn.qkv / attn.proj / norm2 / mlp``, ``norm``,
``global_pool``, ``head``, ``forward_head``), so code that reads a timm ViT's token layout
reads this one.
Other input sizes (multiples of the patch size) work: the position embedding is resized
bilinearly to the new grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PATCH_SIZE = 8
"""Side of a square patch in input pixels."""

IMG_SIZE = 96
"""Tile side the position embedding was built for."""

DEPTH = 3
"""Number of transformer blocks."""

DEFAULT_LAYER = f"blocks.{DEPTH - 1}.norm1"
"""Grad-CAM's layer: the input of the last block's attention (its patch tokens still get a
gradient through the class token's attention; after the last attention they get none)."""


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping patches and project each to ``dim`` features."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.dynamic_img_size = True
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, h, w, dim) patch features (channels last, as timm's dynamic size)."""
        height, width = x.shape[-2:]
        if height % self.patch_size[0] or width % self.patch_size[1]:
            raise ValueError(
                f"input {height} x {width} px is not a multiple of the {self.patch_size[0]} px "
                "patch; crop or pad the image to a multiple of the patch size"
            )
        return self.proj(x).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Multi-head self-attention with one ``qkv`` projection (timm's layout)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the attended (N, T, dim) tokens."""
        n, t, dim = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(n, t, dim))


class Mlp(nn.Module):
    """Two linear layers with a GELU between them."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (N, T, dim) output."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (N, T, dim) output tokens."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VitDemoNet(nn.Module):
    """Small Vision Transformer classifier for RGB tiles.

    Parameters
    ----------
    img_size : int
        Tile side the position embedding is built for.
    mlp_ratio : float
        Hidden width of each MLP relative to ``dim``.
    """

    def __init__(
        self,
        n_classes: int = 3,
        img_size: int = IMG_SIZE,
        patch_size: int = PATCH_SIZE,
        dim: int = 96,
        depth: int = DEPTH,
        num_heads: int = 3,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, dim)
        self.num_prefix_tokens = 1
        self.global_pool = "token"
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, n_classes)
        self._init_weights(dim)

    def _init_weights(self, dim: int) -> None:
        """Initialise as timm's ViT does, except ``qkv``: queries and keys of unit variance.

        With timm's std 0.02 the attention logits start near zero and a small, briefly
        trained ViT keeps near-uniform attention (it learns to pool, not to attend); with
        std ``dim ** -0.5`` the logits start with unit variance, so attention depends on
        content from the first step.
        """
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = dim**-0.5 if name.endswith("attn.qkv") else 0.02
                nn.init.trunc_normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)

    def _pos_embed(self, patches: torch.Tensor) -> torch.Tensor:
        """Return class token + patch tokens (N, 1 + h * w, dim) with position embeddings."""
        n, h, w, dim = patches.shape
        cls_pos, grid_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (h, w) != self.patch_embed.grid_size:
            grid = grid_pos.reshape(1, *self.patch_embed.grid_size, dim).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
            grid_pos = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)
        tokens = patches.reshape(n, h * w, dim) + grid_pos
        return torch.cat([self.cls_token.expand(n, -1, -1) + cls_pos, tokens], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, n_classes) logits for a normalised (N, 3, H, W) batch."""
        x = self._pos_embed(self.patch_embed(x))
        for block in self.blocks:
            x = block(x)
        return self.forward_head(self.norm(x))

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return the logits of normed (N, T, dim) tokens: the head on the class token."""
        return self.head(tokens[:, 0])


def build_vit_demo_net(n_classes: int = 3) -> VitDemoNet:
    """Return an untrained :class:`VitDemoNet` for RGB input with ``n_classes`` logits."""
    return VitDemoNet(n_classes=n_classes)
