"""What embeds a slide's tissue tiles: a slide model's encoder, or a model's image tower.

``slides.embeddings.embed_slide`` embeds the tiles of either with one code path; this says
what it needs from each: the module (in a ``LoadedModel``, whose card gives the
preprocessing), the tile size and microns per pixel, the embedding width and the identity
that keys the embedding cache (``slides.embedding_cache``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.models.slide_model import SlideModel, embedding_width
from napari_gradcam.slides.embedding_cache import encoder_identity, model_identity


@dataclass(frozen=True)
class TileEncoder:
    """A module that turns (N, C, H, W) tiles into (N, D) embeddings, and its tiling.

    Attributes
    ----------
    model : LoadedModel
        The encoder; its card's input size is ``tile_size`` and its mpp ``mpp``.
    tile_size : int
        Side of the square tiles in pixels.
    mpp : float or None
        Microns per pixel the tiles are read at (None: level 0 as it is).
    width : int
        The embedding width D.
    identity : dict
        What decides its output, for the cache key.
    slide_model : SlideModel or None
        The slide model it belongs to (Dask workers reload it from its card).
    """

    model: LoadedModel
    tile_size: int
    mpp: float | None
    width: int
    identity: dict[str, Any]
    slide_model: SlideModel | None = None


def tile_encoder(model: SlideModel | LoadedModel) -> TileEncoder:
    """The tile encoder of a slide model, or a model that returns embeddings (an image tower).

    Raises ``ValueError`` for a model whose card does not give one square input size (the
    tile size), or whose module does not return (N, D) embeddings.
    """
    if isinstance(model, SlideModel):
        return TileEncoder(
            model.encoder, model.tile_size, model.mpp, model.width, encoder_identity(model), model
        )
    size = model.card.input_size
    if size is None or size[0] != size[1]:
        raise ValueError(
            f"embedding a slide's tiles with {model.card.name!r} needs square tiles: its card's "
            f"'input_size' is {size}; give one like [224, 224]"
        )
    width = embedding_width(model, size[0])
    return TileEncoder(model, size[0], model.card.mpp, width, model_identity(model))
