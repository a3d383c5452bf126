"""Attention penalties for training the ViT demo: attend to few tokens, and patches nearby.

Two terms, read from every block's attention during training forwards:

- **entropy**: the mean entropy (nats) of all attention rows. A briefly trained small ViT
  otherwise keeps near-uniform attention (it learns to pool, not to attend).
- **locality**: for the patch tokens' rows, minus the log of the attention mass on patch
  tokens within ``radius`` grid steps (Chebyshev distance; the patch itself included,
  prefix tokens excluded). Patch tokens then mix with their neighbours, like a convolution,
  while the class token stays free to attend anywhere. Without it the patch tokens of a
  small ViT attend across the whole tile, and attention rollout, which multiplies the blocks'
  attention, carries the class token's attention off what it looked at.

The ViT demo computes attention with ``scaled_dot_product_attention``, which returns no
weights; a forward hook on each block's ``attn.qkv`` recomputes the logits from the queries
and keys while the model trains.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def neighbourhood(grid: tuple[int, int], prefix: int, radius: int) -> torch.Tensor:
    """(h * w, prefix + h * w) boolean: patch key within ``radius`` steps of each patch query."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    places = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    steps = (places[:, None] - places[None]).abs().max(dim=-1).values
    near = torch.zeros(len(places), prefix + len(places), dtype=torch.bool)
    near[:, prefix:] = steps <= radius
    return near


class AttentionPenalty:
    """Entropy and locality of a ViT's attention, summed over its blocks, as a loss term.

    Parameters
    ----------
    model : torch.nn.Module
        A ViT with timm's layout: ``blocks[i].attn`` with ``qkv``, ``num_heads``, ``scale``;
        ``patch_embed.grid_size`` and ``num_prefix_tokens``. Training inputs must have the
        grid the position embedding was built for.
    entropy : float
        Weight of each block's mean attention entropy.
    locality : float
        Weight of each block's mean ``-log`` attention mass of a patch on its neighbourhood.
    radius : int
        Half-width of the neighbourhood in patches (1: the 3 x 3 patches around).
    """

    def __init__(self, model: nn.Module, entropy: float, locality: float, radius: int = 1):
        self.entropy, self.locality = entropy, locality
        self.prefix = model.num_prefix_tokens
        self.near = neighbourhood(tuple(model.patch_embed.grid_size), self.prefix, radius)
        self._terms: list[torch.Tensor] = []
        for block in model.blocks:
            block.attn.qkv.register_forward_hook(self._reader(block.attn))

    def _reader(self, attn: nn.Module) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def read(_module: nn.Module, _inputs: tuple, qkv: torch.Tensor) -> None:
            if not attn.training:
                return
            n, tokens, _ = qkv.shape
            q, k, _v = qkv.reshape(n, tokens, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
            logits = q @ k.transpose(-2, -1) * attn.scale
            if self.entropy:
                self._terms.append(self.entropy * row_entropy(logits).mean())
            if self.locality:
                self._terms.append(self.locality * -self.log_near_mass(logits).mean())

        return read

    def log_near_mass(self, logits: torch.Tensor) -> torch.Tensor:
        """The log of each patch row's attention mass on its neighbourhood (N, heads, h * w)."""
        patch_rows = logits[:, :, self.prefix :]
        near = patch_rows.masked_fill(~self.near, float("-inf"))
        return torch.logsumexp(near, dim=-1) - torch.logsumexp(patch_rows, dim=-1)

    def penalty(self) -> torch.Tensor:
        """The weighted terms of the training forward just run, summed; then forget them."""
        if not self._terms:
            raise RuntimeError("no training forward since the last penalty: nothing to weigh")
        value = torch.stack(self._terms).sum()
        self._terms.clear()
        return value


def row_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row of ``softmax(logits)`` (..., T) -> (...)."""
    weights = torch.softmax(logits, dim=-1)
    return -(weights * torch.log(weights.clamp_min(1e-12))).sum(dim=-1)
