"""Hooks as context managers, model state save/restore, and target-layer discovery."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from napari_gradcam.core.explain.layouts import Layout


@dataclass
class Captured:
    """What a capture hook saw: the target layer's output, made a leaf that requires grad."""

    activation: torch.Tensor | None = None
    calls: int = field(default=0)
    layout: Layout | None = None


@contextmanager
def frozen_model(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with no parameter gradients; restore both on exit.

    Every module's ``training`` flag and every parameter's ``requires_grad`` flag is restored,
    even when the body raises.
    """
    training = {module: module.training for module in model.modules()}
    requires_grad = {param: param.requires_grad for param in model.parameters()}
    try:
        model.eval()
        for param in requires_grad:
            param.requires_grad_(False)
        yield model
    finally:
        for module, flag in training.items():
            module.training = flag
        for param, flag in requires_grad.items():
            param.requires_grad_(flag)


@contextmanager
def capture_layer(
    module: nn.Module,
    name: str,
    *,
    with_grad: bool = True,
    layout_of: Callable[[torch.Tensor], Layout] | None = None,
) -> Iterator[Captured]:
    """Capture the output of ``module`` during the forward passes run inside the block.

    ``layout_of(output)`` decides the output's layout (``Captured.layout``) or raises
    ``ValueError``; without it only (N, C, h, w) outputs are accepted. The activation is kept
    in the layer's own layout.

    With ``with_grad``, the output is detached and made a leaf that requires grad, so the
    autograd graph starts at this layer: backward costs only the head. The rest of the
    network gets a clone, so in-place operations after the layer cannot modify the leaf.
    Without, a copy of the output is kept, for the same reason. The hook is removed on exit,
    even when the body raises.
    """
    captured = Captured()

    def hook(_module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor | None:
        captured.calls += 1
        if captured.calls > 1:
            raise ValueError(
                f"layer {name!r} runs more than once per forward pass (a shared module); "
                "choose a layer that runs once"
            )
        captured.layout = _layout(output, name, layout_of)
        if not with_grad:  # a copy: in-place operations after the layer cannot change it
            captured.activation = output.detach().clone()
            return None
        captured.activation = output.detach().requires_grad_(True)
        return captured.activation.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _layout(
    output: object, name: str, layout_of: Callable[[torch.Tensor], Layout] | None
) -> Layout:
    if layout_of is not None and isinstance(output, torch.Tensor):
        return layout_of(output)
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
        raise ValueError(
            f"layer {name!r} outputs {shape}, not a spatial (N, C, h, w) map; "
            "choose a convolutional layer"
        )
    return Layout("nchw", (output.shape[2], output.shape[3]))


def ensure_hookable(model: nn.Module) -> None:
    """Raise ``ValueError`` for a TorchScript model: its layers cannot be hooked."""
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(torchscript_message("layer methods such as Grad-CAM"))


def torchscript_message(what: str) -> str:
    """Why ``what`` cannot run on a TorchScript model, and what to do instead."""
    return (
        f"this is a TorchScript model: its layers cannot be hooked, so {what} cannot reach "
        "them. Use method='occlusion' (model-agnostic), or load the Python model "
        "('file.py:factory' with the weights, e.g. saved from scripted.state_dict())"
    )


def candidate_layers(model: object, input_shape: tuple[int, ...] | None = None) -> list[str]:
    """Names of the modules whose output holds a map, in the order their outputs complete.

    A map is an output with a determined layout (``layouts.layer_layout``): (N, C, h, w),
    channels-last (N, h, w, C) or transformer tokens (N, T, C), on more than one cell. Found
    by one dry run on zeros under inference mode, cached per model and input shape. Modules
    called more than once per forward are left out. See ``candidate_layouts`` for the
    layouts and ``default_layer`` for the default.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier (a ``LoadedModel`` gives its card's input size).
    input_shape : tuple of int, optional
        (N, C, H, W) of the dry-run input; default from the card, else (1, 3, 224, 224).
    """
    return list(candidate_layouts(model, input_shape))


def candidate_layouts(
    model: object, input_shape: tuple[int, ...] | None = None
) -> dict[str, Layout]:
    """``candidate_layers`` with each layer's layout, e.g. for labels such as "tokens 14x14"."""
    from napari_gradcam.core.explain.discovery import layer_layouts

    module, shape = _module_and_shape(model, input_shape)
    return layer_layouts(module, shape)


def default_layer(model: object, input_shape: tuple[int, ...] | None = None) -> str | None:
    """The layer explained when none is named, ``None`` without a map (see ``discovery``).

    The card's ``default_layer`` when a ``LoadedModel`` has one; else the last map of a
    convolutional network, or for a transformer the last layer whose patch tokens reach the
    output (for a class-token head, the input of the last block's attention).
    """
    from napari_gradcam.core.explain.discovery import default_layer as discover_default

    card = getattr(model, "card", None)
    if card is not None and card.default_layer:
        return card.default_layer
    module, shape = _module_and_shape(model, input_shape)
    return discover_default(module, shape)


def _module_and_shape(
    model: object, input_shape: tuple[int, ...] | None
) -> tuple[nn.Module, tuple[int, ...]]:
    card = getattr(model, "card", None)
    module = getattr(model, "module", model)
    ensure_hookable(module)
    if input_shape is None:
        input_shape = card.probe_shape if card else (1, 3, 224, 224)
    return module, tuple(input_shape)


def resolve_layer(
    model: nn.Module,
    layer: str | nn.Module | None,
    *,
    default: str | None = None,
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
) -> tuple[str, nn.Module]:
    """Find the target layer by name or module; ``None`` uses ``default`` or ``default_layer``.

    Raises
    ------
    ValueError
        For an unknown name (listing the closest valid names), a module that is not part of
        ``model``, or a model without any spatial layer.
    """
    ensure_hookable(model)
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer and name:
                return name, module
        raise ValueError("the given layer module is not a submodule of the model")
    if layer is None:
        layer = default or _last_candidate(model, input_shape)
    if layer not in modules or layer == "":
        raise ValueError(_unknown_layer_message(layer, [name for name in modules if name]))
    return layer, modules[layer]


def _last_candidate(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    name = default_layer(model, input_shape)
    if name is None:
        raise ValueError(
            "the model has no layer with a spatial map to explain ((N, C, h, w), channels-last, "
            "or transformer tokens whose grid the model declares, reaching the output); name "
            "a layer, or use method='occlusion'"
        )
    return name


def _unknown_layer_message(layer: str, names: list[str]) -> str:
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hint = (
        f"closest: {', '.join(close)}" if close else f"valid names include: {', '.join(names[-8:])}"
    )
    return f"the model has no layer named {layer!r}; {hint}"


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 without any)."""
    for param in model.parameters():
        if param.is_floating_point():
            return param.dtype
    return torch.float32
