"""What the sanity check's cascade re-initialises, step by step, and in which order.

Adebayo et al. (NeurIPS 2018) re-initialise a network "layer by layer" from the output
backwards, taking the blocks of an Inception network as units. Here a unit is:

- in a convolutional network, each module with its own parameters (a convolution, a batch
  norm, the classifier);
- in a transformer (a model that declares patches, see ``model_layers``), each transformer
  block as a whole, so that the cascade walks the blocks from the top (``head``, ``norm``,
  ``blocks.11``, ``blocks.10``, ...); modules with parameters outside the blocks (patch
  embedding, patch merging, norms, the head) stay units of their own.

A block is a member of an ``nn.ModuleList`` or ``nn.Sequential`` of at least two modules of
one type that have submodules, and that holds no such list itself (Swin's blocks, not its
stages). Units are ordered by where the forward pass enters them: a container's own
parameters (a ViT's class token and position embedding on the model itself) are placed at its
start, where they are used.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_gradcam.core.explain.hooks import frozen_model, model_device, owned_forward_hook
from napari_gradcam.core.explain.model_layers import declared_facts

SEED_STEP = 7919
"""Seed distance between the modules of one block (a block's first module takes the unit's)."""
OWN_PARAMETERS = "(the model's own parameters)"
"""How the unit of the model's own parameters (named ``""``) is shown to people."""


def unit_label(name: str) -> str:
    """A unit's name for people (the model itself has the empty name)."""
    return name or OWN_PARAMETERS


def parameter_layers(module: nn.Module, batch: torch.Tensor) -> list[str]:
    """The cascade's units (see the module docstring), in the order the forward pass enters them.

    Raises
    ------
    ValueError
        For a TorchScript model (its modules cannot be hooked or re-initialised).
    """
    if isinstance(module, torch.jit.ScriptModule):
        raise ValueError(
            "the sanity check re-initialises layers of a Python model; a TorchScript model "
            "cannot be changed that way. Load the Python model with its weights instead"
        )
    blocks = transformer_blocks(module)
    units = {name: _unit_of(name, blocks) for name, sub in module.named_modules() if _owns(sub)}
    order: list[str] = []
    handles = [
        owned_forward_hook(
            module.get_submodule(unit), lambda *_a, u=unit: order.append(u), pre=True
        )
        for unit in dict.fromkeys(units.values())
    ]
    try:
        with frozen_model(module), torch.inference_mode():
            module(batch)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


def transformer_blocks(module: nn.Module) -> set[str]:
    """Names of the transformer blocks of ``module``; none unless it declares patches."""
    if not declared_facts(module):
        return set()
    members = {
        f"{name}.{child}" if name else child
        for name, sub in module.named_modules()
        if isinstance(sub, (nn.ModuleList, nn.Sequential)) and _repeated(sub)
        for child, _ in sub.named_children()
    }
    return {name for name in members if not any(_strictly_inside(other, name) for other in members)}


def reinitialise_unit(model: nn.Module, unit: str, blocks: set[str], seed: int) -> None:
    """Re-initialise a unit of ``model``: a whole block, or one module's own parameters."""
    target = model.get_submodule(unit)
    modules = [sub for sub in target.modules() if _owns(sub)] if unit in blocks else [target]
    for offset, sub in enumerate(modules):
        reinitialise(sub, seed + SEED_STEP * offset)


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-initialise the own parameters of ``module`` with its default initialisation.

    Modules without ``reset_parameters`` get normal weights with each parameter's own standard
    deviation (zero biases stay zero). Seeded, so that a check can be repeated.
    """
    device = model_device(module)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        with torch.no_grad():
            for param in module.parameters(recurse=False):
                param.normal_(0.0, float(param.std()) if param.numel() > 1 else 1.0)


def _owns(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _repeated(container: nn.Module) -> bool:
    """At least two members, all of one type and each with submodules of its own."""
    children = list(container.children())
    kinds = {type(child) for child in children}
    return len(children) >= 2 and len(kinds) == 1 and all(any(c.children()) for c in children)


def _strictly_inside(name: str, outer: str) -> bool:
    """Whether module ``name`` lies strictly inside module ``outer``."""
    return name != outer and (outer == "" or name.startswith(f"{outer}."))


def _unit_of(name: str, blocks: set[str]) -> str:
    """The block that holds module ``name``, else the module itself."""
    return next((block for block in blocks if name == block or _strictly_inside(name, block)), name)
