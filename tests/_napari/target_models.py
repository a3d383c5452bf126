"""Tiny models for the target kinds: an image encoder (an embedding) and a segmenter (dense)."""

import torch
from torch import nn

SEGMENTER_CLASSES = ("background", "nuclei")


def encoder_factory() -> nn.Module:
    """A seeded image encoder: conv-relu-pool(4)-conv-relu-GAP, an 8-number embedding."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def segmenter_factory() -> nn.Module:
    """A seeded fully convolutional segmenter: (N, 2, H, W) logits at the input's size."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, len(SEGMENTER_CLASSES), 1),
    )


def word_vectors(texts: list[str]) -> torch.Tensor:
    """A toy text tower for :func:`encoder_factory`: each word adds a fixed random 8-vector."""
    rows = []
    for text in texts:
        row = torch.zeros(8)
        for word in text.split():
            generator = torch.Generator().manual_seed(sum(map(ord, word)))
            row += torch.randn(8, generator=generator)
        rows.append(row)
    return torch.stack(rows)
