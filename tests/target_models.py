"""Tiny models of every output kind, built here, for the tests of targets around ``explain``.

A conv classifier (``output="classes"``), a conv image encoder with a toy text tower
(``output="embedding"``: prompts and "like this region") and a conv segmenter
(``output="dense"``: output regions).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.text_encoder import TextEncoder

SIZE = 32
"""Input side of every model (pixels)."""
EMBEDDING = 8


def _trunk(channels: int) -> list[nn.Module]:
    return [nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4), nn.Conv2d(6, channels, 1)]


def classifier() -> LoadedModel:
    """Three classes ``a``, ``b``, ``c`` from a conv map pooled to logits."""
    torch.manual_seed(0)
    module = nn.Sequential(*_trunk(3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    card = ModelCard(name="classes", classes=("a", "b", "c"), input_size=(SIZE, SIZE))
    return LoadedModel(module.eval(), card, "toy-classes", "factory")


def toy_text(texts: list[str]) -> torch.Tensor:
    """A text tower: each text's embedding drawn from a generator seeded by its characters."""
    rows = [np.random.default_rng(sum(map(ord, t))).standard_normal(EMBEDDING) for t in texts]
    return torch.tensor(np.stack(rows), dtype=torch.float32)


def encoder() -> LoadedModel:
    """An image encoder (N, 8) with a toy text tower: a vision-language model."""
    torch.manual_seed(1)
    module = nn.Sequential(
        *_trunk(EMBEDDING), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8)
    )
    card = ModelCard(name="vl", input_size=(SIZE, SIZE), output="embedding")
    text = TextEncoder(toy_text, "an image of {}")
    return LoadedModel(module.eval(), card, "toy-vl", "factory", text=text)


def segmenter() -> LoadedModel:
    """Dense logits (N, 2, H / 4, W / 4) of ``background`` and ``nuclei``."""
    torch.manual_seed(2)
    module = nn.Sequential(*_trunk(2))
    card = ModelCard(
        name="seg",
        classes=("background", "nuclei"),
        input_size=(SIZE, SIZE),
        output="dense",
        default_layer="1",
    )
    return LoadedModel(module.eval(), card, "toy-seg", "factory")


MODELS = {"toy-classes": classifier, "toy-vl": encoder, "toy-seg": segmenter}
"""Each toy model by the spec the command-line tests give."""
