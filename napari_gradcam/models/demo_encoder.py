"""The demo tile encoder: the demo classifier's pooled features, without its classifier.

It reads the demo classifier's weights unchanged (the classifier's weights are kept but not
used), so the bundled ``demo_net.pt`` is its weights file.
"""

from __future__ import annotations

import torch

from napari_gradcam.models.demo_net import DemoNet


class DemoEncoder(DemoNet):
    """The demo network up to its global average pool: (N, 64) tile embeddings."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, 64) pooled features of a normalised (N, C, H, W) batch."""
        return torch.flatten(self.pool(self.features(x)), 1)


def build_demo_encoder(n_classes: int = 3) -> DemoEncoder:
    """Return an untrained :class:`DemoEncoder` (``n_classes`` sizes the unused classifier)."""
    return DemoEncoder(n_classes=n_classes)
