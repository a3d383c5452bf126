"""A tiny vision-language model built in tests: a conv image tower, a word-count text tower."""

from __future__ import annotations

import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.text_encoder import TextEncoder

WIDTH = 8
TILE = 64
MPP = 0.5


class ImageTower(nn.Module):
    """(N, 3, 64, 64) -> (N, 8) embeddings; ``features.2`` is the last conv layer."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-pooled features, projected."""
        return self.head(self.features(x).mean(dim=(2, 3)))


class WordCounts:
    """A toy text tower: each word adds a fixed random vector; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, texts: list[str] | tuple[str, ...]) -> torch.Tensor:
        """(P, WIDTH) unnormalised embeddings of the texts."""
        self.calls.append(tuple(texts))
        rows = []
        for text in texts:
            row = torch.zeros(WIDTH)
            for word in text.split():
                generator = torch.Generator().manual_seed(sum(map(ord, word)) % 10_007)
                row += torch.randn(WIDTH, generator=generator)
            rows.append(row)
        return torch.stack(rows)


def tiny_vlm(seed: int = 0) -> tuple[LoadedModel, WordCounts]:
    """The model (image tower, card with 64 px tiles at 0.5 µm/px) and its text tower."""
    card = ModelCard(
        name="tiny vlm",
        input_size=(TILE, TILE),
        mpp=MPP,
        default_layer="features.2",
        output="embedding",
    )
    words = WordCounts()
    tower = ImageTower(seed).eval()
    return LoadedModel(tower, card, "tiny-vlm", "factory", text=TextEncoder(words)), words
