"""How a layer's output holds its map: (N, C, h, w), channels-last (N, h, w, C) or tokens.

The value type only; which layout a layer has is decided in ``model_layers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Kind = Literal["nchw", "nhwc", "tokens"]


@dataclass(frozen=True)
class Layout:
    """How a layer's output holds its map.

    Attributes
    ----------
    kind : {"nchw", "nhwc", "tokens"}
        (N, C, h, w), (N, h, w, C), or (N, prefix + h * w, C).
    grid : tuple of int
        (h, w) of the map.
    prefix_tokens : int
        Tokens before the patch tokens (class, distillation, registers); they never reach
        the map.
    stride : tuple of float or None
        (fy, fx) input pixels per map cell when the model declares it (patch size, times the
        stage's downsampling); ``None`` for convolutional maps (then inferred from the sizes).
    """

    kind: Kind
    grid: tuple[int, int]
    prefix_tokens: int = 0
    stride: tuple[float, float] | None = None

    def to_nchw(self, tensor: torch.Tensor) -> torch.Tensor:
        """The map part of ``tensor`` (this layout) as (N, C, h, w); prefix tokens dropped."""
        if self.kind == "nhwc":
            return tensor.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            patches = tensor[:, self.prefix_tokens :]
            return patches.transpose(1, 2).reshape(len(tensor), -1, *self.grid)
        return tensor

    def from_nchw(self, nchw: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_nchw``: (N, C, h, w) back in this layout.

        ``like`` (this layout, same N) gives the prefix tokens, kept unchanged; e.g. for
        Ablation-CAM, which writes a modified map back as the layer's output.
        """
        if self.kind == "nhwc":
            return nchw.permute(0, 2, 3, 1)
        if self.kind == "tokens":
            patches = nchw.flatten(2).transpose(1, 2)
            return torch.cat([like[:, : self.prefix_tokens].to(patches.dtype), patches], dim=1)
        return nchw

    def label(self) -> str:
        """A short description for people, e.g. ``"tokens 14x14"``, ``"NHWC 7x7"``, ``"7x7"``."""
        size = f"{self.grid[0]}x{self.grid[1]}"
        return {"tokens": f"tokens {size}", "nhwc": f"NHWC {size}"}.get(self.kind, size)
