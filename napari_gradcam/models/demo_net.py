"""The bundled demo classifier: a small VGG-like fully convolutional network.

Four conv3x3-BN-ReLU blocks (16, 32, 64, 64 channels) with a 2x2 max-pool after each of
the first three (total stride 8), global average pooling and one linear layer. Because
the head is GAP + linear, the network accepts any input of at least 32 x 32 pixels, and
Grad-CAM on the last ReLU (``features.14``) is exactly a class-activation map.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS: tuple[int, ...] = (16, 32, 64, 64)
"""Output channels of the four conv blocks."""

DEFAULT_LAYER = "features.14"
"""Module name of the last ReLU of ``features``: the layer Grad-CAM explains by default."""


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Return conv3x3 (no bias) -> batch norm -> ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=False),
    ]


class DemoNet(nn.Module):
    """Small fully convolutional classifier for RGB tiles."""

    def __init__(self, n_classes: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for i, channels in enumerate(CHANNELS):
            layers += _conv_block(previous, channels)
            if i < len(CHANNELS) - 1:
                layers.append(nn.MaxPool2d(2))
            previous = channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(previous, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, n_classes) logits for a normalised (N, C, H, W) batch."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build_demo_net(n_classes: int = 3) -> DemoNet:
    """Return an untrained :class:`DemoNet` for RGB input with ``n_classes`` logits."""
    return DemoNet(n_classes=n_classes)
