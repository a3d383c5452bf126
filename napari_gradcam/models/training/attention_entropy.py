"""An attention-entropy penalty for training the ViT demo: attend to few tokens, not all.

The ViT demo computes attention with ``scaled_dot_product_attention``, which returns no
weights; a forward hook on each block's ``attn.qkv`` recomputes them from the queries and
keys while the model trains.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class AttentionEntropy:
    """Mean entropy of the attention rows of a ViT's blocks, read during training forwards.

    Parameters
    ----------
    model : torch.nn.Module
        A ViT with timm's layout: ``blocks[i].attn`` with ``qkv``, ``num_heads``, ``scale``.
    weight : float
        Factor of the mean entropy (nats) in the loss.
    """

    def __init__(self, model: nn.Module, weight: float) -> None:
        self.weight = weight
        self._entropies: list[torch.Tensor] = []
        for block in model.blocks:
            block.attn.qkv.register_forward_hook(self._reader(block.attn))

    def _reader(self, attn: nn.Module) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def read(_module: nn.Module, _inputs: tuple, qkv: torch.Tensor) -> None:
            if not attn.training:
                return
            n, tokens, _ = qkv.shape
            q, k, _v = qkv.reshape(n, tokens, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
            weights = torch.softmax(q @ k.transpose(-2, -1) * attn.scale, dim=-1)
            entropy = -(weights * torch.log(weights.clamp_min(1e-12))).sum(dim=-1)
            self._entropies.append(entropy.mean())

        return read

    def penalty(self) -> torch.Tensor:
        """``weight`` times the mean attention entropy of the forward just run; then forget it."""
        if not self._entropies:
            raise RuntimeError("no training forward since the last penalty: nothing to weigh")
        value = self.weight * torch.stack(self._entropies).mean()
        self._entropies.clear()
        return value
