"""A tiny fully convolutional classifier (stride 4) for fast widget tests."""

import torch
from torch import nn

STRIDE = 4
CLASSES = ("background", "tissue")


def factory() -> nn.Module:
    """Return a seeded two-class CNN: conv-relu-pool(4)-conv-relu-GAP-linear."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(STRIDE),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, len(CLASSES)),
    )
