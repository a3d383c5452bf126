"""Attention maps of vision transformers: rollout, class-token attention, transformer attribution.

The capture forward (``attention_collect``) hands each block's attention, read by
``hooks.capture_attention``, to a reader made for the method. The rollout reader reduces each
block to its head-averaged (N, T, T) factor as it comes, so no more than one block's per-head
probabilities are alive at once (the gradient method keeps them until the backward pass). The
maps are the class token's row over the patch tokens, on the patch grid: stride =
patch size. The formulas are in ``attention_math``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from napari_gradcam.core.explain.method_options import option
from napari_gradcam.core.explain.methods.cam_method import CamMethod

if TYPE_CHECKING:
    import torch
    from torch import nn

    from napari_gradcam.core.explain.context import LayerContext
    from napari_gradcam.core.explain.hooks import BlockAttention

HeadFusion = Literal["mean", "max", "min"]


@dataclass(frozen=True)
class RolloutOptions:
    """Attention rollout's options; each field's ``help`` says what it does."""

    discard_ratio: float = option(
        0.0,
        "discard ratio",
        "share of each row's weakest attention weights dropped per block (0: the paper's rollout)",
        key="discard_ratio",
        short="discard",
        minimum=0.0,
        maximum=0.99,
        step=0.05,
    )
    head_fusion: HeadFusion = option(
        "mean",
        "head fusion",
        "how each block's heads are fused before the product: mean (the paper's), max or min",
        key="head_fusion",
        short="fusion",
        choices=("mean", "max", "min"),
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must be in [0, 1), got {self.discard_ratio}")
        if self.head_fusion not in ("mean", "max", "min"):
            raise ValueError(
                f"unknown head_fusion {self.head_fusion!r}; use 'mean', 'max' or 'min'"
            )


@dataclass(frozen=True)
class AttentionOptions:
    """Class-token attention's options; each field's ``help`` says what it does."""

    head: int | None = option(
        None,
        "attention head",
        "the map of one head of the last block, or the mean of its heads (as in the DINO figures)",
        key="attention_head",
        short="head",
        minimum=0,
        none_label="mean of heads",
        count="heads",
    )

    def __post_init__(self) -> None:
        if self.head is not None and (not isinstance(self.head, int) or self.head < 0):
            raise ValueError(f"attention_head must be a head index >= 0, got {self.head!r}")


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

    def __init__(self, model: nn.Module, batch: torch.Tensor, options: object) -> None:
        from napari_gradcam.core.explain.hooks import GRADCAM_HINT, attention_modules
        from napari_gradcam.core.explain.model_layers import vit_facts

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
        self.modules = attention_modules(model)
        self.prefix = facts.prefix_tokens
        self.grid = facts.grid(tuple(batch.shape[-2:]))
        self.patch_size = facts.patch_size
        self.options = options

    def describe(self) -> str:
        """What the map was read from (``Explanation.layer``): the attention modules."""
        first, last = self.modules[0][0], self.modules[-1][0]
        return first if len(self.modules) == 1 else f"{first} .. {last}"

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

    def __init__(self, model: nn.Module, batch: torch.Tensor, options: object) -> None:
        super().__init__(model, batch, options)
        self.factors: list[torch.Tensor] = []

    def read(self, block: BlockAttention) -> None:
        """Keep the block's factor: its heads fused (mean, max or min), normalised."""
        from napari_gradcam.core.explain.methods.attention_math import rollout_matrix

        fusion, probs = self.options.head_fusion, block.probs
        heads = probs if fusion == "mean" else getattr(probs, f"a{fusion}")(dim=1, keepdim=True)
        self.factors.append(rollout_matrix(heads, self.options.discard_ratio))

    def class_rows(self) -> torch.Tensor:
        """The class token's row of the rollout (N, T)."""
        from napari_gradcam.core.explain.methods.attention_math import class_row_of_product

        return class_row_of_product(self.factors)


class LastBlockReader(AttentionReader):
    """Keeps the class token's row of the last block read, per head."""

    class_rows_only = True

    def __init__(self, model: nn.Module, batch: torch.Tensor, options: object) -> None:
        super().__init__(model, batch, options)
        self.rows: torch.Tensor | None = None

    def describe(self) -> str:
        """The last attention module."""
        return self.modules[-1][0]

    def read(self, block: BlockAttention) -> None:
        """Keep this block's class rows, dropping the earlier block's."""
        self.rows = block.probs[:, :, 0]

    def class_rows(self) -> torch.Tensor:
        """The last block's class token rows, per head (N, heads, T)."""
        return self.rows


class RelevanceReader(AttentionReader):
    """Keeps every block's attention and values; folds them once the gradients arrive."""

    wants_gradients = True

    def __init__(self, model: nn.Module, batch: torch.Tensor, options: object) -> None:
        super().__init__(model, batch, options)
        self.blocks: list[BlockAttention] = []
        self.factors: list[torch.Tensor] = []

    def read(self, block: BlockAttention) -> None:
        """Keep the block's attention and values for the gradients."""
        self.blocks.append(block)

    def read_gradients(self, output_gradients: list[torch.Tensor]) -> None:
        """Reduce each block to ``Abar`` with dY/dA = (dY/dO) V^T, then free the blocks."""
        from napari_gradcam.core.explain.methods.attention_math import (
            attention_gradient,
            relevance_matrix,
        )

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
        from napari_gradcam.core.explain.methods.attention_math import class_row_of_product

        return class_row_of_product(self.factors, add_identity=True)


def last_block_attention(ctx: LayerContext) -> torch.Tensor:
    """The last block's class-token attention (DINO): the mean of the heads, or one head."""
    heads = class_token_map(ctx)
    head = ctx.options.head
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


def class_token_map(ctx: LayerContext) -> torch.Tensor:
    """The reader's class-token row on the patch grid (N, h, w): rollout or relevance."""
    from napari_gradcam.core.explain.methods.attention_math import patch_map

    reader = ctx.attention
    return patch_map(reader.class_rows(), reader.prefix, reader.grid)


ROLLOUT = CamMethod(
    "rollout",
    "Attention rollout",
    "Abnar & Zuidema, ACL 2020",
    frozenset({"attention"}),
    class_token_map,
    options=RolloutOptions,
    map_stride=patch_stride,
    reader=RolloutReader,
)
ATTENTION = CamMethod(
    "attention",
    "Class-token attention",
    "Caron et al. (DINO), ICCV 2021",
    frozenset({"attention"}),
    last_block_attention,
    options=AttentionOptions,
    map_stride=patch_stride,
    reader=LastBlockReader,
)
TRANSFORMER_ATTRIBUTION = CamMethod(
    "transformer-attribution",
    "Transformer attribution",
    "Chefer, Gur & Wolf, ICCV 2021",
    frozenset({"attention", "gradients"}),
    class_token_map,
    map_stride=patch_stride,
    reader=RelevanceReader,
)
