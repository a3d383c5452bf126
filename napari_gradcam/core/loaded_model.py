"""A loaded model: its module, its card, its layers cache and its text tower (``LoadedModel``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.model_layers import ModelLayers
from napari_gradcam.core.text_encoder import TextEncoder

ModelKind = Literal["factory", "torchscript", "pickle", "recipe"]
"""How a model was loaded: built by a factory, a TorchScript archive, a pickle or a recipe."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with the card that says how to feed it.

    ``layers`` answers which layer, what layout and what stride, and caches those answers for
    as long as this model is loaded (emptied when the module is edited in place; see
    ``model_layers``). ``text`` is a vision-language model's text tower (prompts to
    embeddings, cached per prompt); ``None`` for an image-only model.
    """

    module: nn.Module
    card: ModelCard
    spec: str
    kind: ModelKind
    text: TextEncoder | None = field(default=None, kw_only=True, repr=False, compare=False)
    layers: ModelLayers = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", ModelLayers(self.module))
