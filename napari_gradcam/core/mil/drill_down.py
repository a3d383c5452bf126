"""From a tile's part in the slide prediction down to its pixels (chain rule across the aggregator).

The slide logit Y depends on tile ``i`` through its embedding ``e_i = encoder(x_i)``. To first
order, the pixels that raise ``g . encoder(x_i)`` with ``g = dY/de_i`` raise Y. Wrapping the
encoder as a single-logit model with that score lets every layer method of ``explain`` (and
every encoder layer, transformer token layers included) draw the pixel map.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.explain.pipeline import explain

ENCODER = "encoder"


class EmbeddingDirection(nn.Module):
    """A single-logit model: ``encoder(x) . direction`` as (N, 1) logits."""

    def __init__(self, encoder: nn.Module, direction: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("direction", direction.detach().reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projection of each image's embedding on the direction, (N, 1)."""
        embedding = self.encoder(x)
        if embedding.ndim != 2 or embedding.shape[1] != len(self.direction):
            raise ValueError(
                f"the encoder returns {tuple(embedding.shape)}; the slide model needs (N, "
                f"{len(self.direction)}) embeddings"
            )
        return (embedding @ self.direction.to(embedding.dtype))[:, None]


def drill_down(
    encoder: object,
    tile: np.ndarray | torch.Tensor,
    direction: torch.Tensor,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    card: ModelCard | None = None,
    origin: tuple[float, float] = (0.0, 0.0),
) -> Explanation:
    """Map of the pixels of ``tile`` that pushed the slide logit along ``direction``.

    Parameters
    ----------
    encoder : torch.nn.Module or LoadedModel
        The tile encoder (returns (N, D) embeddings).
    tile : numpy.ndarray or torch.Tensor
        The tile's pixels, as ``explain`` takes them.
    direction : torch.Tensor
        (D,) gradient of the slide logit with respect to this tile's embedding.
    method, layer : str, optional
        Any layer method and encoder layer (names as in the encoder, without a prefix).
    card : ModelCard, optional
        The encoder's card (default: the ``LoadedModel``'s).
    origin : tuple of float
        The tile's top-left pixel in the slide, recorded for placement.
    """
    module = getattr(encoder, "module", encoder)
    card = card or getattr(encoder, "card", None) or ModelCard()
    wrapped = EmbeddingDirection(module, direction.to(next(module.parameters()).device))
    default = f"{ENCODER}.{card.default_layer}" if card.default_layer else None
    drill_card = replace(card, classes=("against", "for"), default_layer=default)
    return explain(
        wrapped,
        tile,
        method=method,
        layer=f"{ENCODER}.{layer}" if layer else None,
        target=1,
        card=drill_card,
        origin=origin,
    )
