"""One model, many threads: a lock per model, and hooks that see only their own call's forwards.

The docks share one loaded model and run it in worker threads. Hooks, the ``training`` flags and
the parameters' ``requires_grad`` flags belong to the module, not to a call, so two calls that
overlap on one model would see each other's forwards and restore each other's flags. The policy,
decided here once:

- **Serialise per model.** Every path of this package that runs a model does so inside
  ``frozen_model`` (or ``model_lock`` directly), which holds the model's re-entrant lock for the
  whole call: one explanation, check or prediction at a time per model; other models run freely.
  On a CPU the threads would only share the same cores, and on a GPU one model's kernels already
  fill the device, so serialising costs little and makes every map equal the one computed alone.
- **Hooks belong to their thread.** A hook registered with ``owned_forward_hook`` ignores
  forwards run by other threads, so code outside this package (a script in napari's console, a
  plain inference loop) can run the same module while a capture is in progress without tripping
  it or being seen by it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

ForwardHook = Callable[[nn.Module, tuple, Any], Any]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises this package's runs of ``model`` (one per module).

    Examples
    --------
    >>> import torch
    from torch import nn
    >>> layer = nn.Linear(2, 2)
    >>> model_lock(layer) is model_lock(layer)
    True
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def owned_forward_hook(module: nn.Module, hook: ForwardHook) -> RemovableHandle:
    """Register ``hook`` on ``module`` for forwards run by the calling thread only.

    Forwards that other threads run on the same module pass through untouched: the hook neither
    sees their output nor changes it.
    """
    owner = threading.get_ident()

    def owned(hooked: nn.Module, inputs: tuple, output: Any) -> Any:
        if threading.get_ident() != owner:
            return None
        return hook(hooked, inputs, output)

    return module.register_forward_hook(owned)


def owned_forward_pre_hook(
    module: nn.Module, hook: Callable[[nn.Module, tuple], Any]
) -> RemovableHandle:
    """Register a forward pre-hook on ``module`` for forwards run by the calling thread only."""
    owner = threading.get_ident()

    def owned(hooked: nn.Module, inputs: tuple) -> Any:
        if threading.get_ident() != owner:
            return None
        return hook(hooked, inputs)

    return module.register_forward_pre_hook(owned)


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
