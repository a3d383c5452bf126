"""Small segmentation networks built in the tests: (N, classes, h, w) logits, never downloaded."""

from __future__ import annotations

import torch
from torch import nn


class TinySegmenter(nn.Module):
    """Encoder (stride 2), decoder (back to the input's size), 1x1 head: 3 logit maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(12, 6, 3, padding=1),
            nn.ReLU(),
        )
        self.segmentation_head = nn.Conv2d(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x)))


class WithAuxiliaryLabels(nn.Module):
    """A segmenter that also returns image labels, ``(masks, labels)``, as smp's ``aux_params``."""

    def __init__(self, segmenter: nn.Module) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks = self.segmenter(x)
        return masks, masks.mean(dim=(2, 3))
