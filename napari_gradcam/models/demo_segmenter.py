"""The bundled demo segmenter: a tiny U-Net labelling each pixel background, tissue or nuclei.

Two down steps (16, 32, 64 channels; 2 x 2 max-pools), two up steps (bilinear upsampling,
concatenation with the encoder's features at that scale, two conv-BN-ReLU), and a 1 x 1 head:
``forward`` returns (N, 3, H, W) logits at input resolution for any input whose sides are
multiples of 4. Grad-CAM explains the last decoder block (``up1.5``, full resolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLASSES: tuple[str, str, str] = ("background", "tissue", "nuclei")
"""Pixel classes in logit order: glass, tissue other than nuclei, nuclei."""

CHANNELS: tuple[int, int, int] = (16, 32, 64)
"""Channels of the encoder at full, half and quarter resolution."""

DEFAULT_LAYER = "up1.5"
"""The last ReLU of the full-resolution decoder block: the features the 1 x 1 head reads."""


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Return two conv3x3 (no bias) -> batch norm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class DemoSegmenter(nn.Module):
    """Tiny U-Net for RGB images: per-pixel class logits at input resolution."""

    def __init__(self, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        full, half, quarter = CHANNELS
        self.down0 = _double_conv(3, full)
        self.down1 = _double_conv(full, half)
        self.bottom = _double_conv(half, quarter)
        self.up2 = _double_conv(quarter + half, half)
        self.up1 = _double_conv(half + full, full)
        self.head = nn.Conv2d(full, n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, n_classes, H, W) logits of a normalised (N, 3, H, W) batch."""
        height, width = x.shape[-2:]
        if height % 4 or width % 4:
            raise ValueError(
                f"input {height} x {width} px: the demo segmenter takes sides that are "
                "multiples of 4; crop or pad the image"
            )
        full = self.down0(x)
        half = self.down1(F.max_pool2d(full, 2))
        quarter = self.bottom(F.max_pool2d(half, 2))
        half = self.up2(torch.cat([_upsample(quarter), half], dim=1))
        full = self.up1(torch.cat([_upsample(half), full], dim=1))
        return self.head(full)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` upsampled 2x bilinearly."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def build_demo_segmenter() -> DemoSegmenter:
    """Return an untrained :class:`DemoSegmenter`."""
    return DemoSegmenter()
