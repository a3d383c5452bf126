"""The formulas of the attention methods, on per-block attention tensors; no hooks, no model.

Every function takes attention probabilities ``A`` of shape (N, heads, T, T) (rows: queries,
columns: keys; each row sums to 1), with the class token at index 0, ``prefix`` prefix tokens
(class, distillation, registers) before the patch tokens, and the patch ``grid`` (h, w) with
``h * w = T - prefix``. Maps are the class token's row over the patch tokens, (N, h, w);
prefix tokens never reach them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def patch_map(rows: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """The patch-token part of token rows (..., T), reshaped onto the grid (..., h, w).

    Raises
    ------
    ValueError
        When ``T - prefix`` is not ``h * w``: the tokens do not match the grid.
    """
    height, width = grid
    tokens = rows.shape[-1]
    if tokens - prefix != height * width:
        raise ValueError(
            f"the attention covers {tokens} tokens, not {prefix} prefix tokens + a "
            f"{height} x {width} patch grid; the model's token layout is not the one declared"
        )
    return rows[..., prefix:].reshape(*rows.shape[:-1], height, width)


def discard_lowest(attention: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the ``floor(ratio * T)`` smallest weights of each row of (N, T, T); a new tensor.

    Not part of Abnar & Zuidema (2020): dropping the weakest links before the product is
    a noise filter popularised by J. Gildenblat's *vit-explain* (there over the whole
    matrix; here per row, so every query keeps its strongest keys).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {ratio}")
    count = int(ratio * attention.shape[-1])
    if count == 0:
        return attention
    lowest = attention.topk(count, dim=-1, largest=False).indices
    return attention.scatter(-1, lowest, 0.0)


def rollout_matrix(attention: torch.Tensor, discard_ratio: float = 0.0) -> torch.Tensor:
    """One block's factor of attention rollout: ``normalise(mean_heads(A) + I)`` (N, T, T).

    The weakest weights are optionally discarded first (see ``discard_lowest``).
    """
    fused = discard_lowest(attention.mean(dim=1), discard_ratio)
    fused.diagonal(dim1=-2, dim2=-1).add_(1.0)
    fused /= fused.sum(dim=-1, keepdim=True)
    return fused


def class_row_of_product(
    factors: Sequence[torch.Tensor], add_identity: bool = False
) -> torch.Tensor:
    """The class token's row (N, T) of ``F_L ... F_1`` (or ``(I + F_L) ... (I + F_1)``).

    ``factors`` are (N, T, T), first block first. The row is carried from the left, one
    vector-matrix product per block (O(L T^2) per image instead of O(L T^3) for the matrices).
    """
    if not factors:
        raise ValueError("the attention maps need at least one attention block")
    row = factors[-1][:, :1]
    if add_identity:
        row = row + torch.eye(1, row.shape[-1], dtype=row.dtype, device=row.device)
    for factor in reversed(factors[:-1]):
        row = row + row @ factor if add_identity else row @ factor
    return row[:, 0]


def attention_rollout(
    attentions: Iterable[torch.Tensor],
    prefix: int,
    grid: tuple[int, int],
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, ACL 2020, eq. 1), the class token's row (N, h, w).

    Per block: heads averaged, optionally the weakest weights discarded (see
    ``discard_lowest``), the identity added for the residual path and the rows normalised;
    the blocks multiplied, ``R = A_L ... A_1``; the map is ``R[class, patches]``.
    """
    factors = [rollout_matrix(attention, discard_ratio) for attention in attentions]
    return patch_map(class_row_of_product(factors), prefix, grid)


def class_attention(attention: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """The class token's attention to the patches, per head (N, heads, h, w), as in DINO.

    Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021:
    the last block's attention of the [CLS] query to the patch keys, one map per head.
    """
    return patch_map(attention[:, :, 0], prefix, grid)


def attention_gradient(output_gradient: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """dY/dA (N, heads, T, T) from dY/dO and V (N, heads, T, d), where ``O = A V`` per head."""
    return output_gradient @ values.transpose(-2, -1)


def relevance_matrix(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """One block's ``Abar = mean_heads((dY/dA * A)^+)`` (N, T, T) of Chefer et al. (eq. 5)."""
    return (gradient * attention).clamp_min(0).mean(dim=1)


def transformer_attribution(
    attentions: Iterable[torch.Tensor],
    gradients: Iterable[torch.Tensor],
    prefix: int,
    grid: tuple[int, int],
) -> torch.Tensor:
    """Gradient-weighted attention relevance, the class token's row (N, h, w).

    Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV 2021, eq. 5-6 (self-attention rule): with ``R = I``,
    for each block in order, ``R += mean_heads((dY/dA * A)^+) @ R``; the map is
    ``R[class, patches]``. ``gradients`` are dY/dA of the target class's logit, per block.
    """
    pairs = zip(attentions, gradients, strict=True)
    factors = [relevance_matrix(attention, gradient) for attention, gradient in pairs]
    return patch_map(class_row_of_product(factors, add_identity=True), prefix, grid)
