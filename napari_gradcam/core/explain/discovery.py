"""Which layers hold a map, in which layout, and which one to explain by default.

One dry run on zeros (inference mode) finds every module that runs once per forward and
whose output has a determined layout (``layouts.layer_layout``) on a grid of more than one
cell. The default layer:

- a convolutional network (no declared patches): the last such layer;
- a transformer: the last layer whose patch tokens reach the output (their gradient is not
  zero, checked by one forward and backward on a fixed random input). With a pooled head
  (average over patch tokens) that is the last block or the norm after it; with a
  class-token head (or a head the model does not declare), the last ``LayerNorm`` among
  them, i.e. the input of the last block's attention (``blocks[-1].norm1``): the patch
  tokens of later layers never reach the class token.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn

from napari_gradcam.core.explain.layouts import Layout, layer_layout
from napari_gradcam.core.explain.sharing import owned_forward_hook
from napari_gradcam.core.explain.token_facts import declared_facts, vit_facts

Shape = tuple[int, ...]
HookMaker = Callable[[str], Callable[..., None]]
_LAYOUTS: weakref.WeakKeyDictionary[nn.Module, dict[Shape, dict[str, Layout]]] = (
    weakref.WeakKeyDictionary()
)
_DEFAULTS: weakref.WeakKeyDictionary[nn.Module, dict[Shape, str | None]] = (
    weakref.WeakKeyDictionary()
)
REACH_SEED = 0
"""Seed of the random input that checks which layers' patch tokens reach the output."""


def layer_layouts(model: nn.Module, input_shape: Shape) -> dict[str, Layout]:
    """Candidate layers in the order their outputs complete, with their layouts (cached)."""
    per_shape = _LAYOUTS.setdefault(model, {})
    if input_shape not in per_shape:
        per_shape[input_shape] = _dry_run_layouts(model, input_shape)
    return dict(per_shape[input_shape])


def default_layer(model: nn.Module, input_shape: Shape) -> str | None:
    """The default layer to explain (see the module docstring), ``None`` without any (cached)."""
    per_shape = _DEFAULTS.setdefault(model, {})
    if input_shape not in per_shape:
        per_shape[input_shape] = _choose_default(model, input_shape)
    return per_shape[input_shape]


def reaching_layers(model: nn.Module, input_shape: Shape) -> list[str]:
    """The candidate layers whose map part gets a non-zero output gradient, in run order.

    For a transformer with a class-token head this leaves out the layers after the last
    attention (their patch tokens never reach the class token).
    """
    layouts = layer_layouts(model, input_shape)
    reaching = _reaching(model, input_shape, layouts) if layouts else set()
    return [name for name in layouts if name in reaching]


def _dry_run_layouts(model: nn.Module, input_shape: Shape) -> dict[str, Layout]:
    from napari_gradcam.core.explain.sharing import frozen_model

    declared = declared_facts(model)
    found: dict[str, Layout] = {}
    calls: dict[str, int] = {}

    def make_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            try:
                layout = layer_layout(
                    model, name, output, input_shape[-2:], input_shape[0], declared=declared
                )
            except ValueError:
                return
            if layout.grid[0] * layout.grid[1] > 1:
                found[name] = layout

        return hook

    with _hooked(model, make_hook), frozen_model(model), torch.inference_mode():
        model(_input(model, input_shape, zeros=True))
    return {name: layout for name, layout in found.items() if calls[name] == 1}


class _hooked:
    """Forward hooks made by ``make_hook(name)`` on every named module, removed on exit."""

    def __init__(
        self, model: nn.Module, make_hook: HookMaker, names: set[str] | None = None
    ) -> None:
        self.handles = [
            owned_forward_hook(module, make_hook(name))
            for name, module in model.named_modules()
            if name and (names is None or name in names)
        ]

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def _input(model: nn.Module, shape: Shape, zeros: bool = False) -> torch.Tensor:
    from napari_gradcam.core.explain.sharing import model_device, model_dtype

    device, dtype = model_device(model), model_dtype(model)
    if zeros:
        return torch.zeros(shape, device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(REACH_SEED)
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


def _choose_default(model: nn.Module, input_shape: Shape) -> str | None:
    layouts = layer_layouts(model, input_shape)
    if not layouts:
        return None
    facts = vit_facts(model)
    if facts is None:
        return list(layouts)[-1]
    reaching = reaching_layers(model, input_shape)
    if not reaching:
        return None
    modules = dict(model.named_modules())
    norms = [name for name in reaching if isinstance(modules[name], nn.LayerNorm)]
    if facts.head != "pooled" and norms:
        return norms[-1]
    return reaching[-1]


def _reaching(model: nn.Module, input_shape: Shape, layouts: dict[str, Layout]) -> set[str]:
    """The layers whose map part (prefix tokens dropped) gets a non-zero output gradient."""
    from napari_gradcam.core.explain.sharing import frozen_model
    from napari_gradcam.core.explain.targets import as_logits

    outputs: dict[str, torch.Tensor] = {}

    def make_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if output.requires_grad:
                output.retain_grad()
                outputs[name] = output

        return hook

    with (
        _hooked(model, make_hook, set(layouts)),
        frozen_model(model),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        logits = as_logits(model(_input(model, input_shape).requires_grad_(True)))
        logits.max(dim=1).values.sum().backward()
    return {
        name
        for name, output in outputs.items()
        if output.grad is not None and bool(layouts[name].to_nchw(output.grad).abs().amax() > 0)
    }
