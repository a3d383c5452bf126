"""The formulas of the attention methods, on per-block attention tensors; no hooks, no model.

Every function takes attention probabilities ``A`` of shape (N, heads, T, T) (rows: queries,
columns: keys; each row sums to 1), with the class token at index 0, ``prefix`` prefix tokens
(class, distillation, registers) before the patch tokens, and the patch ``grid`` (h, w) with
``h * w = T - prefix``. Maps are the class token's row over the patch tokens, (N, h, w);
prefix tokens never reach them. Rollout (Abnar & Zuidema, ACL 2020, eq. 1): ``R = A_L ... A_1``
of ``rollout_matrix`` factors. Transformer attribution (Chefer, Gur & Wolf, ICCV 2021, eq. 5-6):
``R = I``, then ``R += relevance_matrix @ R`` per block. The map is ``R[class, patches]``.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def attention_gradient(output_gradient: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """dY/dA (N, heads, T, T) from dY/dO and V (N, heads, T, d), where ``O = A V`` per head."""
    return output_gradient @ values.transpose(-2, -1)


def relevance_matrix(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """One block's ``Abar = mean_heads((dY/dA * A)^+)`` (N, T, T) of Chefer et al. (eq. 5)."""
    return (gradient * attention).clamp_min(0).mean(dim=1)
