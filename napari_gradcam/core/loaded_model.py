"""A loaded classifier: its module, its card and its layers cache (``LoadedModel``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.model_layers import ModelLayers

ModelKind = Literal["factory", "torchscript", "pickle", "recipe"]
"""How a model was loaded: built by a factory, a TorchScript archive, a pickle or a recipe."""


@dataclass(frozen=True)
class LoadedModel:
    """A classifier in eval mode with the card that says how to feed it.

    ``layers`` answers which layer, what layout and what stride, and caches those answers for
    as long as this model is loaded (emptied when the module is edited in place; see
    ``model_layers``).
    """

    module: nn.Module
    card: ModelCard
    spec: str
    kind: ModelKind
    text: object = None  # STAND-IN: the TextEncoder of a vision-language model
    layers: ModelLayers = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", ModelLayers(self.module))
