"""Hooks as context managers, model state save/restore, and target-layer discovery."""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from napari_gradcam.core.explain.sharing import model_lock, owned_forward_hook

_CANDIDATES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], list[str]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class Captured:
    """What a capture hook saw: the target layer's output, made a leaf that requires grad."""

    activation: torch.Tensor | None = None
    calls: int = field(default=0)


@contextmanager
def frozen_model(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with no parameter gradients; restore both on exit.

    Holds the model's lock (``sharing.model_lock``) throughout, so no other call of this package
    runs the model meanwhile. Every module's ``training`` flag and every parameter's
    ``requires_grad`` flag is restored, even when the body raises.
    """
    with model_lock(model):
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
def capture_layer(module: nn.Module, name: str, *, with_grad: bool = True) -> Iterator[Captured]:
    """Capture the output of ``module`` during the forward passes run inside the block.

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
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            raise ValueError(
                f"layer {name!r} outputs {shape}, not a spatial (N, C, h, w) map; "
                "choose a convolutional layer"
            )
        if not with_grad:  # a copy: in-place operations after the layer cannot change it
            captured.activation = output.detach().clone()
            return None
        captured.activation = output.detach().requires_grad_(True)
        return captured.activation.clone()

    handle = owned_forward_hook(module, hook)
    try:
        yield captured
    finally:
        handle.remove()


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
    """Names of the modules with a spatial 4-D output, in the order their outputs complete.

    Found by one dry run on zeros under inference mode, cached per model and input shape.
    Modules called more than once per forward and outputs of size 1 x 1 are left out. The
    last name is the default Grad-CAM layer.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier (a ``LoadedModel`` gives its card's input size).
    input_shape : tuple of int, optional
        (N, C, H, W) of the dry-run input; default from the card, else (1, 3, 224, 224).
    """
    card = getattr(model, "card", None)
    model = getattr(model, "module", model)
    ensure_hookable(model)
    if input_shape is None:
        input_shape = card.probe_shape if card else (1, 3, 224, 224)
    per_shape = _CANDIDATES.setdefault(model, {})
    if input_shape not in per_shape:
        per_shape[input_shape] = _dry_run_spatial_layers(model, input_shape)
    return list(per_shape[input_shape])


def _dry_run_spatial_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    completed: list[str] = []
    calls: dict[str, int] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output[0, 0].numel() > 1:
                completed.append(name)

        return hook

    handles = [
        owned_forward_hook(module, make_hook(name))
        for name, module in model.named_modules()
        if name
    ]
    device = model_device(model)
    try:
        with frozen_model(model), torch.inference_mode():
            model(torch.zeros(input_shape, device=device, dtype=model_dtype(model)))
    finally:
        for handle in handles:
            handle.remove()
    return [name for name in completed if calls[name] == 1]


def resolve_layer(
    model: nn.Module,
    layer: str | nn.Module | None,
    *,
    default: str | None = None,
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
) -> tuple[str, nn.Module]:
    """Find the target layer by name or module; ``None`` uses ``default`` or the last candidate.

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
    names = candidate_layers(model, input_shape)
    if not names:
        raise ValueError(
            "the model has no layer with a spatial (N, C, h, w) output to explain; "
            "Grad-CAM needs a convolutional network"
        )
    return names[-1]


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
