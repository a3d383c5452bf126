"""Activation layouts: (N, C, h, w), channels-last (N, h, w, C), or tokens (N, T, C).

A layer's layout is decided from what the model declares (see ``token_facts``) together with
the input size and the output's shape, never guessed: an output that fits no layout, or fits
two in different ways, is refused with a message naming the layer, its shape and what to do.

Rules for a 4-D output (N, a, b, c):

- Inside a model that declares patches (a transformer): the map's grid must be the patch
  grid, or the patch grid halved ``j`` times (hierarchical stages such as Swin's); the
  stride is then the patch size times ``2 ** j``, exactly. (N, C, h, w) and (N, h, w, C) are
  both read; one must fit.
- Otherwise (a convolutional network): PyTorch's (N, C, h, w), unless the (h, w) it implies
  cannot be a map of the input (strides that disagree between the axes, or below 1/2) and
  the channels-last reading can; when both can, a ``LayerNorm`` or ``Linear`` over the last
  axis (e.g. inside a ConvNeXt block) declares channels-last.

A 3-D output (N, T, C) needs a declared patch size: with ``k`` declared prefix tokens and a
patch grid h x w, ``T = k + h * w``; in hierarchical stages (no prefix), ``T = h' * w'`` on a
halved grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from napari_gradcam.core.explain.token_facts import TokenFacts, declared_facts, facts_for

Kind = Literal["nchw", "nhwc", "tokens"]
MAX_HALVINGS = 5
"""Hierarchical stages looked for below the patch grid (Swin has 3)."""


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


def layer_layout(
    model: nn.Module,
    name: str,
    output: object,
    input_hw: tuple[int, int],
    batch_size: int | None = None,
    *,
    declared: dict[str, TokenFacts] | None = None,
) -> Layout:
    """Decide the layout of layer ``name``'s ``output`` for an input of ``input_hw`` pixels.

    Parameters
    ----------
    model : torch.nn.Module
        The model that contains the layer.
    name : str
        The layer's module name.
    output : torch.Tensor
        Its output.
    input_hw : tuple of int
        (H, W) of the model's input.
    batch_size : int, optional
        N of the input; an output with another first axis is refused.
    declared : dict, optional
        ``token_facts.declared_facts(model)``, when known (saves walking the model).

    Raises
    ------
    ValueError
        When the output is not a map this module can read without guessing; the message
        names the layer, its shape and what to do.
    """
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"layer {name!r} outputs a {type(output).__name__}, not a spatial map; {_DO}"
        )
    shape = tuple(output.shape)
    if batch_size is not None and shape and shape[0] != batch_size:
        raise ValueError(
            f"layer {name!r} outputs {shape}: its first axis is not the batch of {batch_size} "
            f"(e.g. attention windows); {_DO}"
        )
    facts = facts_for(declared_facts(model) if declared is None else declared, name)
    if output.ndim == 3:
        return _token_layout(name, shape, facts, input_hw)
    if output.ndim == 4:
        if facts is not None:
            return _patch_grid_layout(model.get_submodule(name), name, shape, facts, input_hw)
        return _convolutional_layout(model, name, shape, input_hw)
    raise ValueError(f"layer {name!r} outputs {shape}, not a spatial map; {_DO}")


_DO = "choose a layer with a spatial map (a convolution, a transformer block or its norm1)"


def _stage_grids(facts: TokenFacts, input_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """The patch grid and its halvings (stages pad odd sizes up), largest first."""
    grids = [facts.grid(input_hw)]
    for _ in range(MAX_HALVINGS):
        h, w = grids[-1]
        if h * w <= 1:
            break
        grids.append((math.ceil(h / 2), math.ceil(w / 2)))
    return grids


def _stride(facts: TokenFacts, stage: int) -> tuple[float, float]:
    return (float(facts.patch_size[0] * 2**stage), float(facts.patch_size[1] * 2**stage))


def _token_layout(
    name: str, shape: tuple[int, ...], facts: TokenFacts | None, input_hw: tuple[int, int]
) -> Layout:
    if facts is None:
        raise ValueError(
            f"layer {name!r} outputs {shape}, tokens (N, T, C), but the model declares no patch "
            "size, so their grid is unknown; give the model timm's attributes "
            "(patch_embed.patch_size, num_prefix_tokens) or a Hugging Face config.patch_size, "
            f"or {_DO[0].lower()}{_DO[1:]}"
        )
    tokens, prefix = shape[1], facts.prefix_tokens
    for stage, grid in enumerate(_stage_grids(facts, input_hw)):
        extra = tokens - grid[0] * grid[1]
        expected = (prefix or 0) if stage == 0 else 0
        if extra == expected and (stage == 0 or not prefix):
            return Layout("tokens", grid, extra, _stride(facts, stage))
    grid = facts.grid(input_hw)
    declared = "an undeclared number of" if prefix is None else str(prefix)
    raise ValueError(
        f"layer {name!r} outputs {shape}: {tokens} tokens are not {declared} prefix tokens plus "
        f"the {grid[0]}x{grid[1]} patch grid of a {input_hw[0]}x{input_hw[1]} input (patch "
        f"size {facts.patch_size}), nor a halving of it; {_DO}"
    )


def _patch_grid_layout(
    module: nn.Module,
    name: str,
    shape: tuple[int, ...],
    facts: TokenFacts,
    input_hw: tuple[int, int],
) -> Layout:
    grids = _stage_grids(facts, input_hw)
    readings = {"nchw": (shape[2], shape[3]), "nhwc": (shape[1], shape[2])}
    fits = [
        Layout(kind, grid, 0, _stride(facts, grids.index(grid)))  # type: ignore[arg-type]
        for kind, grid in readings.items()
        if grid in grids
    ]
    if len(fits) == 2 and fits[0].grid == fits[1].grid and shape[1] == shape[3]:
        kind = _module_kind(module, shape[3])
        kind = kind or ("nhwc" if facts.channels_last else "nchw")
        fits = [fit for fit in fits if fit.kind == kind]
    if len(fits) == 1:
        return fits[0]
    why = "fits both (N, C, h, w) and (N, h, w, C)" if fits else "is on no patch grid"
    raise ValueError(
        f"layer {name!r} outputs {shape}, which {why}: the patch grid of a "
        f"{input_hw[0]}x{input_hw[1]} input is {grids[0][0]}x{grids[0][1]} (patch size "
        f"{facts.patch_size}); attention weights and windows are not maps; {_DO}"
    )


def _convolutional_layout(
    model: nn.Module, name: str, shape: tuple[int, ...], input_hw: tuple[int, int]
) -> Layout:
    first = _plausible((shape[2], shape[3]), input_hw)
    last = _plausible((shape[1], shape[2]), input_hw)
    if last and (not first or _module_kind(model.get_submodule(name), shape[3]) == "nhwc"):
        return Layout("nhwc", (shape[1], shape[2]))
    if first:
        return Layout("nchw", (shape[2], shape[3]))
    raise ValueError(
        f"layer {name!r} outputs {shape}, which is no spatial map of a {input_hw[0]}x"
        f"{input_hw[1]} input in (N, C, h, w) or (N, h, w, C) layout; {_DO}"
    )


def _plausible(grid: tuple[int, int], input_hw: tuple[int, int]) -> bool:
    """Whether ``grid`` can be a map of the input: both strides >= 1/2 and within 1.5x."""
    if grid[0] < 1 or grid[1] < 1 or grid[0] * grid[1] < 2:
        return False
    strides = (input_hw[0] / grid[0], input_hw[1] / grid[1])
    return min(strides) >= 0.5 and max(strides) <= 1.5 * min(strides)


def _module_kind(module: nn.Module, channels: int) -> Kind | None:
    """The layout ``module``'s type declares for an output with a last axis of ``channels``.

    2-D convolutions, batch norms and pools output (N, C, h, w); a ``LayerNorm`` over, or a
    ``Linear`` into, the last axis outputs channels-last; anything else declares nothing.
    """
    if isinstance(module, nn.LayerNorm):
        return "nhwc" if tuple(module.normalized_shape) == (channels,) else None
    if isinstance(module, nn.Linear):
        return "nhwc" if module.out_features == channels else None
    spatial = (nn.Conv2d, nn.modules.batchnorm._BatchNorm, nn.MaxPool2d, nn.AvgPool2d)
    return "nchw" if isinstance(module, spatial) else None
