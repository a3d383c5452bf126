"""The embedding of an image region: the reference of "like this region"."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.batching import run_model
from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.core.explain.inputs import model_batch, model_parts
from napari_gradcam.core.explain.targets import bind_target, output_tensor
from napari_gradcam.core.targets import LikeEmbedding


def embed_region(
    model: object, pixels: np.ndarray, card: ModelCard | None = None, label: str = "region"
) -> LikeEmbedding:
    """The embedding of an image region, as the reference of "like this region".

    A region larger than the card's input size is cut into tiles of that size (the last ones
    aligned to the far edges) whose unit embeddings are averaged; a smaller one is embedded
    whole. Inference mode, under the model's lock.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        An encoder whose card says output ``"embedding"``.
    pixels : numpy.ndarray
        The region (H, W[, C]), as ``explain`` takes images.
    card : ModelCard, optional
        Overrides the card of a ``LoadedModel``.
    label : str
        The reference's name in layer names and records.
    """
    module, card = model_parts(model, card)
    bind_target(LikeEmbedding((1.0,), label), card)  # refuses a model that gives no embedding
    tiles = _region_tiles(np.asarray(pixels), card.input_size)
    with frozen_model(module), torch.inference_mode():
        units = []
        for tile in tiles:
            embedding = run_model(module, model_batch(module, tile, card), output_tensor)
            if embedding.ndim != 2:
                raise ValueError(
                    f"the model returned shape {tuple(embedding.shape)}; a region's embedding "
                    "is one vector per image (N, D)"
                )
            units.append(F.normalize(embedding.float(), dim=1)[0])
        mean = torch.stack(units).mean(dim=0)
    return LikeEmbedding(tuple(F.normalize(mean, dim=0).cpu().tolist()), label)


def _region_tiles(pixels: np.ndarray, size: tuple[int, int] | None) -> list[np.ndarray]:
    """Tiles of the card's input size covering ``pixels`` (the region itself when smaller)."""
    height, width = pixels.shape[:2]
    if size is None or (height <= size[0] and width <= size[1]):
        return [pixels]
    rows = _starts(height, size[0])
    cols = _starts(width, size[1])
    return [pixels[y : y + size[0], x : x + size[1]] for y in rows for x in cols]


def _starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    return starts if starts[-1] == length - tile else [*starts, length - tile]
