"""Attention maps of vision transformers: rollout, class-token attention, transformer attribution.

The capture forward (``attention_collect``) hands each block's attention, read by
``hooks.capture_attention``, to a reader made for the method. The rollout reader reduces each
block to its head-averaged (N, T, T) factor as it comes, so no more than one block's per-head
probabilities are alive at once (the gradient method keeps them until the backward pass). The
maps are the class token's row over the patch tokens, on the patch grid: stride =
patch size. The formulas are in ``attention_math``.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_gradcam.core.explain.context import LayerContext, MethodSettings
from napari_gradcam.core.explain.hooks import GRADCAM_HINT, BlockAttention
from napari_gradcam.core.explain.methods.attention_math import (
    attention_gradient,
    class_row_of_product,
    patch_map,
    relevance_matrix,
    rollout_matrix,
)
from napari_gradcam.core.explain.model_layers import vit_facts


class AttentionReader:
    """Token facts of the model for this input, and the blocks' attention as they are read.

    Raises (on construction, before any forward)
    ------
    ValueError
        When the model does not declare a class-token head with a known number of prefix
        tokens: the class token's row, which these maps are, would not exist or mean nothing.
    """

    wants_gradients = False
    class_rows_only = False

    def __init__(self, model: nn.Module, batch: torch.Tensor, settings: MethodSettings) -> None:
        facts = vit_facts(model)
        if facts is None or facts.prefix_tokens is None:
            raise ValueError(
                "attention maps need a vision transformer that declares its patch size and "
                f"prefix tokens (timm's patch_embed and num_prefix_tokens); {GRADCAM_HINT}"
            )
        if facts.head != "token" or facts.prefix_tokens < 1:
            raise ValueError(
                "attention maps are the class token's attention, and this model's classifier "
                f"does not read a class token (global pool: {facts.head}); use "
                "method='gradcam', which explains pooled transformers"
            )
        self.prefix = facts.prefix_tokens
        self.grid = facts.grid(tuple(batch.shape[-2:]))
        self.patch_size = facts.patch_size
        self.settings = settings

    def describe(self, names: list[str]) -> str:
        """What the map was read from (``Explanation.layer``), given the attention modules."""
        return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"

    def read(self, block: BlockAttention) -> None:
        """Take one block's attention (blocks come in the order they run)."""
        raise NotImplementedError

    def read_gradients(self, output_gradients: list[torch.Tensor]) -> None:
        """Take d(score)/dO (N, T, heads * d) of every block, in run order."""
        raise NotImplementedError

    def class_rows(self) -> torch.Tensor:
        """The class token's row (N, T), or one per head (N, heads, T)."""
        raise NotImplementedError


class RolloutReader(AttentionReader):
    """Reduces each block to its rollout factor as it is read."""

    def __init__(self, model: nn.Module, batch: torch.Tensor, settings: MethodSettings) -> None:
        super().__init__(model, batch, settings)
        self.factors: list[torch.Tensor] = []

    def read(self, block: BlockAttention) -> None:
        """Keep the block's head-averaged, normalised factor."""
        self.factors.append(rollout_matrix(block.probs, self.settings.discard_ratio))

    def class_rows(self) -> torch.Tensor:
        """The class token's row of the rollout (N, T)."""
        return class_row_of_product(self.factors)


class LastBlockReader(AttentionReader):
    """Keeps the class token's row of the last block read, per head."""

    class_rows_only = True

    def __init__(self, model: nn.Module, batch: torch.Tensor, settings: MethodSettings) -> None:
        super().__init__(model, batch, settings)
        self.rows: torch.Tensor | None = None

    def describe(self, names: list[str]) -> str:
        """The last attention module."""
        return names[-1]

    def read(self, block: BlockAttention) -> None:
        """Keep this block's class rows, dropping the earlier block's."""
        self.rows = block.probs[:, :, 0]

    def class_rows(self) -> torch.Tensor:
        """The last block's class token rows, per head (N, heads, T)."""
        return self.rows


class RelevanceReader(AttentionReader):
    """Keeps every block's attention and values; folds them once the gradients arrive."""

    wants_gradients = True

    def __init__(self, model: nn.Module, batch: torch.Tensor, settings: MethodSettings) -> None:
        super().__init__(model, batch, settings)
        self.blocks: list[BlockAttention] = []
        self.factors: list[torch.Tensor] = []

    def read(self, block: BlockAttention) -> None:
        """Keep the block's attention and values for the gradients."""
        self.blocks.append(block)

    def read_gradients(self, output_gradients: list[torch.Tensor]) -> None:
        """Reduce each block to ``Abar`` with dY/dA = (dY/dO) V^T, then free the blocks."""
        for block, gradient in zip(self.blocks, output_gradients, strict=True):
            n, heads, tokens, dim = block.values.shape
            per_head = (
                gradient.to(block.values.dtype).reshape(n, tokens, heads, dim).transpose(1, 2)
            )
            attention_grad = attention_gradient(per_head, block.values)
            self.factors.append(relevance_matrix(block.probs, attention_grad))
        self.blocks = []

    def class_rows(self) -> torch.Tensor:
        """The class token's row of the relevance (N, T)."""
        return class_row_of_product(self.factors, add_identity=True)


def rollout(ctx: LayerContext) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): see ``attention_math.attention_rollout``."""
    return _class_map(ctx)


def transformer_attribution(ctx: LayerContext) -> torch.Tensor:
    """Chefer, Gur & Wolf (ICCV 2021): see ``attention_math.transformer_attribution``."""
    return _class_map(ctx)


def last_block_attention(ctx: LayerContext) -> torch.Tensor:
    """The last block's class-token attention (DINO): the mean of the heads, or one head."""
    reader = ctx.attention
    heads = patch_map(reader.class_rows(), reader.prefix, reader.grid)
    head = ctx.settings.attention_head
    if head is None:
        return heads.mean(dim=1)
    if head >= heads.shape[1]:
        raise ValueError(
            f"attention_head={head}, but the last block has {heads.shape[1]} heads "
            f"(0 to {heads.shape[1] - 1})"
        )
    return heads[:, head]


def patch_stride(ctx: LayerContext) -> tuple[float, float]:
    """The maps' stride: one cell per patch token."""
    return float(ctx.attention.patch_size[0]), float(ctx.attention.patch_size[1])


def _class_map(ctx: LayerContext) -> torch.Tensor:
    reader = ctx.attention
    return patch_map(reader.class_rows(), reader.prefix, reader.grid)
