"""The fastest form of a model for the many inference forwards of perturbation methods.

Score-CAM and occlusion run hundreds of forwards of one model. Two rewrites make each one
cheaper without changing what it computes: eval-mode BatchNorm folded into the convolution
before it (on a traced copy, so the user's model is never changed), and on CPU, 4-D weights
and inputs in channels-last layout, which the CPU convolution kernels run markedly faster.
A rewrite is used only when it gives the model's own logits on the example.

On request the copy also runs in bfloat16: about twice as fast again on CPUs with AVX-512
BF16 and on GPUs, with logits rounded to about three significant digits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from napari_gradcam.core.explain.batching import run_model
from napari_gradcam.core.explain.targets import as_logits

SAME_RTOL = 1e-4
"""How close a rewritten model's logits must be to the model's (relative to their scale).

Folding BatchNorm changes only the rounding (about 1e-7 in float32); a rewrite that lost
something of the model's behaviour differs by far more."""
BFLOAT16_RTOL = 0.05
"""The same for a bfloat16 copy: its 8-bit mantissas round each layer's output by ~0.4 %."""
_UNTRACEABLE = (fx.proxy.TraceError, TypeError, ValueError, RuntimeError, NotImplementedError)


@contextmanager
def fast_inference(
    model: nn.Module,
    example: torch.Tensor,
    bfloat16: bool = False,
    head: Callable[[object], torch.Tensor] = as_logits,
) -> Iterator[Forward]:
    """Yield a function computing ``head`` of ``model``'s output faster, inputs laid out for it.

    ``head`` is the logits by default, or what a bound target scores.

    Prefers a traced copy with BatchNorm folded into convolutions, in channels-last layout
    on CPU (and in bfloat16 with ``bfloat16``). A model that cannot be traced (TorchScript,
    data-dependent control flow) has its own weights made channels-last for the block and
    restored on exit (or a plain copy runs in bfloat16); one that fails on channels-last
    input (e.g. ``.view`` on a feature map) runs as it is.
    """
    with torch.inference_mode():
        expected = run_model(model, example[:1], head)
    dtype, rtol = (torch.bfloat16, BFLOAT16_RTOL) if bfloat16 else (example.dtype, SAME_RTOL)
    fast = _fused_copy(model)
    if fast is None and bfloat16:
        fast = _plain_copy(model)
    for layout in _layouts(example) if fast is not None else ():
        forward = Forward(fast.to(dtype=dtype, memory_format=layout), layout, dtype, head)
        if _gives(forward, example[:1], expected, rtol):
            yield forward
            return
    with _channels_last_weights(model, example, expected, head) as layout:
        yield Forward(model, layout, example.dtype, head)


@dataclass(frozen=True)
class Forward:
    """A module with the layout and dtype its inputs are given in, and the head of its output.

    Called on inputs (B, C, H, W), it returns ``head`` of the output in the inputs' dtype.
    """

    module: nn.Module
    layout: torch.memory_format
    dtype: torch.dtype
    head: Callable[[object], torch.Tensor] = as_logits

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """The logits of ``inputs``, in their dtype."""
        fast_inputs = inputs.to(dtype=self.dtype, memory_format=self.layout)
        return run_model(self.module, fast_inputs, self.head).to(inputs.dtype)


def _fused_copy(model: nn.Module) -> nn.Module | None:
    """A traced copy of an eval-mode model with BatchNorm folded in; ``None`` if untraceable."""
    if model.training or isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        with torch.inference_mode(False), torch.no_grad():
            return fuse(model)
    except _UNTRACEABLE:  # includes models deepcopy cannot copy (TypeError)
        return None


def _plain_copy(model: nn.Module) -> nn.Module | None:
    if isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        with torch.inference_mode(False), torch.no_grad():
            return copy.deepcopy(model)
    except _UNTRACEABLE:
        return None


def _layouts(example: torch.Tensor) -> tuple[torch.memory_format, ...]:
    if example.device.type == "cpu" and example.ndim == 4:
        return (torch.channels_last, torch.contiguous_format)
    return (torch.contiguous_format,)


def _gives(forward: Forward, example: torch.Tensor, expected: torch.Tensor, rtol: float) -> bool:
    """Whether ``forward`` runs on ``example`` and gives the ``expected`` logits within ``rtol``."""
    try:
        with torch.inference_mode():
            logits = forward(example)
    except _UNTRACEABLE:
        return False
    if logits.shape != expected.shape:
        return False
    scale = float(expected.abs().max()) or 1.0
    return torch.allclose(logits, expected, rtol=rtol, atol=rtol * scale)


@contextmanager
def _channels_last_weights(
    model: nn.Module,
    example: torch.Tensor,
    expected: torch.Tensor,
    head: Callable[[object], torch.Tensor],
) -> Iterator[torch.memory_format]:
    """The model's own 4-D weights in channels-last layout for the block, when that works."""
    converted = _to_channels_last(model) if torch.channels_last in _layouts(example) else None
    forward = Forward(model, torch.channels_last, example.dtype, head)
    try:
        if converted is not None and _gives(forward, example[:1], expected, SAME_RTOL):
            yield torch.channels_last
        else:
            _restore(converted or [])
            converted = None
            yield torch.contiguous_format
    finally:
        _restore(converted or [])


def _to_channels_last(model: nn.Module) -> list[torch.Tensor]:
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.ndim == 4]
    converted = [t for t in tensors if not t.is_contiguous(memory_format=torch.channels_last)]
    with torch.inference_mode(False), torch.no_grad():
        for tensor in converted:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return converted


def _restore(tensors: list[torch.Tensor]) -> None:
    with torch.inference_mode(False), torch.no_grad():
        for tensor in tensors:
            tensor.data = tensor.data.contiguous()
