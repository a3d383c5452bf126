"""LeGrad (Bousselham et al., ICCV 2025): how sensitive each block's own score is to its attention.

For each chosen block l, the block's output tokens go through the model's own final norm,
pooling and head (``score_projection``) to a score ``s^l`` of the target: a class logit, or
the cosine with a text embedding for a vision-language image tower. Then

``E^l = mean over heads and query tokens of ReLU(ds^l / dA^l)``,

with ``A^l`` the block's attention probabilities (N, heads, T, T); the map is the mean of
``E^l`` over the chosen blocks, at the patch tokens (prefix keys dropped), on the patch grid.
``ds^l/dA^l = (ds^l/dO^l) V^T`` per head (``O = A V``), so ``A`` is never kept: one forward
(each chosen block's output goes on detached) and one backward through the chosen blocks
only, whose graphs are disjoint, so the gradient of the summed scores gives each block the
gradient of its own score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from napari_gradcam.core.explain.method_options import option
from napari_gradcam.core.explain.methods.attention import patch_stride
from napari_gradcam.core.explain.methods.cam_method import CamMethod

if TYPE_CHECKING:
    import torch
    from torch import nn

    from napari_gradcam.core.explain.attention_gradients import TappedAttention
    from napari_gradcam.core.explain.context import LayerContext

DEFAULT_BLOCKS = 2
"""The authors' code scores the last two blocks by default (``LeWrapper(layer_index=-2)``)."""


@dataclass(frozen=True)
class LegradOptions:
    """LeGrad's options; each field's ``help`` says what it does."""

    blocks: int | None = option(
        DEFAULT_BLOCKS,
        "scored blocks",
        "how many of the last transformer blocks are scored and averaged (the authors' code: "
        "the last 2; all: every block)",
        key="legrad_blocks",
        short="blocks",
        minimum=1,
        none_label="all",
    )

    def __post_init__(self) -> None:
        if self.blocks is not None and (not isinstance(self.blocks, int) or self.blocks < 1):
            raise ValueError(f"legrad_blocks must be a number of blocks >= 1, got {self.blocks!r}")


class LegradReader:
    """The model's declared tower, the chosen blocks, and the map once the gradients arrive.

    Raises (on construction, before any forward)
    ------
    ValueError
        For a model without a declared score projection (``score_projection``), or more
        blocks asked for than the model has.
    """

    def __init__(self, model: nn.Module, batch: torch.Tensor, options: LegradOptions) -> None:
        from napari_gradcam.core.explain.score_projection import transformer_tower

        self.tower = transformer_tower(model)
        count = len(self.tower.blocks)
        wanted = count if options.blocks is None else options.blocks
        if wanted > count:
            raise ValueError(
                f"legrad_blocks={wanted}, but the model has {count} transformer blocks "
                f"(1 to {count}, or empty for all)"
            )
        self.blocks = [name for name, _ in self.tower.blocks[count - wanted :]]
        self.attentions = list(self.tower.attentions[count - wanted :])
        self.prefix = self.tower.prefix_tokens
        self.grid = self.tower.grid(tuple(batch.shape[-2:]))
        self.patch_size = self.tower.patch_size
        self.options = options
        self.relevance: torch.Tensor | None = None

    def describe(self) -> str:
        """The scored blocks (``Explanation.layer``)."""
        first, last = self.blocks[0], self.blocks[-1]
        return first if first == last else f"{first} .. {last}"

    def read_gradients(
        self, tapped: list[TappedAttention], gradients: list[torch.Tensor | None]
    ) -> None:
        """Average ``mean_(heads, queries) ReLU(ds^l/dA^l)`` (N, T) over the chosen blocks."""
        import torch

        total = None
        for tap, gradient in zip(tapped, gradients, strict=True):
            if gradient is None:  # the target ignores this block's attention
                gradient = torch.zeros_like(tap.leaf)
            block = tap.attention_gradient(gradient).clamp_min(0).mean(dim=(1, 2))
            total = block if total is None else total + block
        self.relevance = total / len(tapped)


def legrad_map(ctx: LayerContext) -> torch.Tensor:
    """The mean block relevance at the patch tokens, on the patch grid (N, h, w)."""
    from napari_gradcam.core.explain.methods.attention_math import patch_map

    reader = ctx.attention
    return patch_map(reader.relevance, reader.prefix, reader.grid)


LEGRAD = CamMethod(
    "legrad",
    "LeGrad",
    "Bousselham et al., ICCV 2025 (arXiv 2404.03214)",
    frozenset({"attention", "gradients", "block scores"}),
    legrad_map,
    options=LegradOptions,
    map_stride=patch_stride,
    reader=LegradReader,
)
