"""Attention MIL aggregators: gated attention pooling (Ilse et al. 2018) and CLAM's branches.

The contract every aggregator of this package (and a user's own) follows: ``forward(embeddings,
coords=None)`` takes (B, N, D) tile embeddings (B bags, usually 1) and returns logits (B, classes).
"""

from __future__ import annotations

import torch
from torch import nn


class GatedAttention(nn.Module):
    """Attention scores ``w^T (tanh(V h) * sigmoid(U h))`` per tile (Ilse et al. 2018, eq. 9).

    Returns raw scores (B, N, branches); the aggregator takes their softmax over the N tiles.
    """

    def __init__(self, width: int, hidden: int, branches: int = 1) -> None:
        super().__init__()
        self.value = nn.Linear(width, hidden)
        self.gate = nn.Linear(width, hidden)
        self.score = nn.Linear(hidden, branches)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Raw attention scores (B, N, branches) of tile features (B, N, width)."""
        return self.score(torch.tanh(self.value(h)) * torch.sigmoid(self.gate(h)))


class AttentionMIL(nn.Module):
    """ABMIL (Ilse et al., ICML 2018), or CLAM-MB (Lu et al., Nat. Biomed. Eng. 2021).

    Tile embeddings go through a shared ``embed`` layer, a gated ``attention`` module scores each
    tile, and the softmax of the scores over the tiles pools the features. With
    ``branch_per_class`` (CLAM's multi-branch form) each class has its own attention branch and
    its own linear classifier on its own pooled feature.

    Parameters
    ----------
    in_dim : int
        Embedding width D.
    hidden : int
        Width of the embedded tile features.
    attention_hidden : int
        Width of the gated attention's hidden layer.
    branch_per_class : bool
        One attention branch per class (CLAM-MB) instead of one shared branch (ABMIL).
    """

    def __init__(
        self,
        in_dim: int,
        n_classes: int = 2,
        hidden: int = 128,
        attention_hidden: int = 64,
        branch_per_class: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.branch_per_class = branch_per_class
        branches = n_classes if branch_per_class else 1
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.attention = GatedAttention(hidden, attention_hidden, branches)
        self.classifier = nn.Linear(hidden, n_classes)

    def attention_weights(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Softmax attention (B, N, branches) over the tiles of each bag."""
        return torch.softmax(self.attention(self.embed(embeddings)), dim=1)

    def forward(self, embeddings: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Slide logits (B, classes) of tile embeddings (B, N, D); ``coords`` are not used."""
        if embeddings.ndim != 3 or embeddings.shape[-1] != self.in_dim:
            raise ValueError(
                f"expected tile embeddings (bags, tiles, {self.in_dim}), got "
                f"{tuple(embeddings.shape)}"
            )
        features = self.embed(embeddings)
        weights = torch.softmax(self.attention(features), dim=1)  # (B, N, K)
        pooled = weights.transpose(1, 2) @ features  # (B, K, hidden)
        if not self.branch_per_class:
            return self.classifier(pooled[:, 0])
        per_class = (pooled * self.classifier.weight).sum(dim=-1)  # class k uses its own branch
        return per_class + self.classifier.bias


def build_attention_mil(**kwargs: object) -> AttentionMIL:
    """Factory for model cards: ``napari_gradcam.core.mil.aggregators:build_attention_mil``."""
    return AttentionMIL(**kwargs)
