"""Hooks and model state: every place this package touches a model's hooks or its flags.

Hooks, ``training`` and ``requires_grad`` flags belong to the module, not to a call, and the
docks share one model across worker threads. So every path that runs a model holds the model's
re-entrant lock for the whole call (``frozen_model`` or ``model_lock``): one call at a time per
model (one model already fills the cores or the GPU), and every map equals the one computed
alone. Hooks from ``owned_forward_hook`` ignore other threads' forwards (a console script may
run the same module meanwhile). Every hook here is a context manager that removes its hooks
on exit, even when the body raises.

Attention taps: timm's ``Attention`` computes ``qkv`` (N, T, 3, heads, d), passes q and k
through ``q_norm`` / ``k_norm``, attends (often fused, never materialising the probabilities)
and hands ``O = A V`` (N, T, heads * d) to ``norm`` (or ``proj``). Hooks on ``qkv``, ``q_norm``
and ``k_norm`` see v, q and k; a pre-hook on the output module sees O. The probabilities are
recomputed as ``softmax(q k^T * scale)`` and checked on the class token's and the last token's
rows (``A V`` must equal O; 2/T of the cost), or the module is refused (rotary embeddings,
masks, another layout), never guessed. Nothing on the model is changed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from napari_gradcam.core.explain.layout import Layout

ForwardHook = Callable[[nn.Module, tuple, Any], Any]
HookMaker = Callable[[str], ForwardHook]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
READABLE_PARTS = ("qkv", "q_norm", "k_norm", "proj")
"""Submodules an attention module needs to be read (timm's names), besides ``num_heads`` and
``scale``."""
GRADCAM_HINT = "use method='gradcam' on a block's layer instead"


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises this package's runs of ``model`` (one per module).

    Examples
    --------
    >>> from torch import nn
    >>> layer = nn.Linear(2, 2)
    >>> model_lock(layer) is model_lock(layer)
    True
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def owned_forward_hook(
    module: nn.Module, hook: Callable[..., Any], *, pre: bool = False, with_kwargs: bool = False
) -> RemovableHandle:
    """Register ``hook`` on ``module`` for forwards run by the calling thread only.

    ``hook(module, inputs, output)``, or with ``pre`` a forward pre-hook ``hook(module,
    inputs)``; ``with_kwargs`` passes the keyword arguments after the inputs, as torch does.
    Forwards that other threads run on the same module pass through untouched: the hook
    neither sees their input or output nor changes it.
    """
    owner = threading.get_ident()

    def owned(hooked: nn.Module, *args: Any) -> Any:
        if threading.get_ident() != owner:
            return None
        return hook(hooked, *args)

    register = module.register_forward_pre_hook if pre else module.register_forward_hook
    return register(owned, with_kwargs=with_kwargs)


@contextmanager
def frozen_model(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode with no parameter gradients; restore both on exit.

    Holds the model's lock (``model_lock``) throughout, so no other call of this package
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


@dataclass
class Captured:
    """What a capture hook saw: the target layer's output, made a leaf that requires grad."""

    activation: torch.Tensor | None = None
    calls: int = field(default=0)
    layout: Layout | None = None


@contextmanager
def capture_layer(
    module: nn.Module,
    name: str,
    layout_of: Callable[[object], Layout],
    *,
    with_grad: bool = True,
) -> Iterator[Captured]:
    """Capture the output of ``module`` during the forward passes run inside the block.

    ``layout_of(output)`` decides the output's layout (``Captured.layout``) or raises
    ``ValueError`` (``ModelLayers.layout_check``). The activation is kept in the layer's own
    layout.

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
        captured.layout = layout_of(output)
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


def captured_activation(captured: Captured, name: str) -> torch.Tensor:
    """The captured output; ``ValueError`` when the layer did not run."""
    if captured.activation is None:
        raise ValueError(f"layer {name!r} did not run in the forward pass; choose another")
    return captured.activation


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


@contextmanager
def forward_hooks(
    model: nn.Module, make_hook: HookMaker, names: set[str] | None = None
) -> Iterator[None]:
    """Forward hooks made by ``make_hook(name)`` on every named module (or those in ``names``)."""
    handles = [
        owned_forward_hook(module, make_hook(name))
        for name, module in model.named_modules()
        if name and (names is None or name in names)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class OutputSizes:
    """Module outputs per sample (bytes): the largest, overall and after the target layer ran.

    ``new_after_layer`` sums the outputs of the modules without children that ran after the
    layer, except outputs sharing memory with the module's input (``nn.Identity``, views):
    about what a backward pass from the layer saves.
    """

    largest: int = 0
    largest_after_layer: int = 0
    new_after_layer: int = 0
    layer_done: bool = False


@contextmanager
def record_output_sizes(model: nn.Module, layer: nn.Module | None) -> Iterator[OutputSizes]:
    """Record the largest per-sample module output of the forwards run inside the block."""
    sizes = OutputSizes()

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.ndim > 0 and len(output) > 0:
            size = output.nbytes // len(output)
            sizes.largest = max(sizes.largest, size)
            if sizes.layer_done:
                sizes.largest_after_layer = max(sizes.largest_after_layer, size)
                if _is_new_leaf_output(module, inputs, output):
                    sizes.new_after_layer += size
        sizes.layer_done = sizes.layer_done or module is layer

    handles = []
    if not isinstance(model, torch.jit.ScriptModule):
        handles = [owned_forward_hook(module, hook) for module in model.modules()]
    try:
        yield sizes
    finally:
        for handle in handles:
            handle.remove()


def _is_new_leaf_output(module: nn.Module, inputs: tuple, output: torch.Tensor) -> bool:
    """Whether a module without children wrote a new tensor (not a view of its input)."""
    if next(module.children(), None) is not None:
        return False
    storage = output.untyped_storage().data_ptr()
    return all(
        not isinstance(x, torch.Tensor) or x.untyped_storage().data_ptr() != storage for x in inputs
    )


@dataclass(frozen=True)
class BlockAttention:
    """One attention module's probabilities and values from one forward.

    Attributes
    ----------
    name : str
        The module's name in the model.
    probs : torch.Tensor
        ``softmax(q k^T * scale)`` (N, heads, T, T), in float32 (float64 for a float64
        model), not part of any graph; only the class token's query row (N, heads, 1, T)
        when captured with ``class_rows_only``.
    values : torch.Tensor
        v (N, heads, T, d), in the same dtype, not part of any graph.
    """

    name: str
    probs: torch.Tensor
    values: torch.Tensor


BlockFn = Callable[[BlockAttention], None]


@dataclass
class AttentionOutputs:
    """The attention outputs O (N, T, heads * d) in run order, when captured with gradients."""

    outputs: list[torch.Tensor] = field(default_factory=list)


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The readable attention modules of ``model`` (timm's ``Attention`` layout), by name.

    Raises
    ------
    ValueError
        When the model has an attention module that cannot be read (it is named, with what
        to do), or none at all.
    """
    readable: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if is_readable_attention(module) and not any(_within(name, outer) for outer, _ in readable):
            readable.append((name, module))
    for name, module in model.named_modules():
        related = any(_within(name, r) or _within(r, name) for r, _ in readable)
        if _looks_like_attention(module) and not related:
            raise ValueError(
                f"attention module {name!r} ({type(module).__name__}) cannot be read: attention "
                f"methods need timm's layout ({', '.join(READABLE_PARTS)} submodules, num_heads "
                f"and scale); {GRADCAM_HINT}"
            )
    if not readable:
        raise ValueError(f"the model has no transformer attention module; {GRADCAM_HINT}")
    return readable


def _within(name: str, outer: str) -> bool:
    """Whether module ``name`` is ``outer`` or inside it."""
    return outer == "" or name == outer or name.startswith(f"{outer}.")


def is_readable_attention(module: nn.Module) -> bool:
    """Whether ``module`` has timm's ``Attention`` layout (``READABLE_PARTS``, heads, scale)."""
    parts = all(isinstance(getattr(module, part, None), nn.Module) for part in READABLE_PARTS)
    return (
        parts and isinstance(getattr(module, "num_heads", None), int) and hasattr(module, "scale")
    )


def _looks_like_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower()


@contextmanager
def capture_attention(
    modules: list[tuple[str, nn.Module]],
    on_block: BlockFn,
    *,
    with_grad: bool = False,
    class_rows_only: bool = False,
) -> Iterator[AttentionOutputs]:
    """Call ``on_block`` with each attention module's probabilities during the forwards inside.

    ``modules`` are ``(name, module)`` pairs from ``attention_modules``. With
    ``class_rows_only`` only the first query's row (the class token's) is computed and checked.
    With ``with_grad`` the outputs O are kept (made to require grad where the graph starts),
    so that d(score)/dO can be taken after the forward. Each module must run once per
    forward. The hooks are removed on exit, even when the body raises.
    """
    outputs = AttentionOutputs()
    kept = outputs if with_grad else None
    taps = [_Tap(name, module, on_block, kept, class_rows_only) for name, module in modules]
    handles = []
    try:
        for tap in taps:
            handles.extend(tap.register())
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


class _Tap:
    """The hooks on one attention module: q, k and v in, O checked and handed on."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        on_block: BlockFn,
        outputs: AttentionOutputs | None,
        class_rows_only: bool,
    ) -> None:
        self.name, self.module, self.on_block, self.outputs = name, module, on_block, outputs
        self.class_rows_only = class_rows_only
        self.seen: dict[str, torch.Tensor] = {}

    def register(self) -> list[RemovableHandle]:
        module = self.module
        out = module.norm if isinstance(getattr(module, "norm", None), nn.Module) else module.proj
        return [
            owned_forward_hook(module.qkv, self._keep("qkv")),
            owned_forward_hook(module.q_norm, self._keep("q")),
            owned_forward_hook(module.k_norm, self._keep("k")),
            owned_forward_hook(out, self._read, pre=True),
        ]

    def _keep(self, key: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            if key in self.seen:
                raise ValueError(
                    f"attention module {self.name!r} runs more than once per forward pass "
                    f"(a shared module); {GRADCAM_HINT}"
                )
            if not isinstance(output, torch.Tensor):
                raise ValueError(self._unreadable(f"its {key} is not a tensor"))
            self.seen[key] = output.detach()

        return hook

    def _read(self, _module: nn.Module, inputs: tuple) -> tuple | None:
        seen, self.seen = self.seen, {}
        output = inputs[0] if inputs else None
        if set(seen) != {"qkv", "q", "k"} or not isinstance(output, torch.Tensor):
            raise ValueError(self._unreadable("q, k, v and the output did not all appear"))
        with torch.no_grad():
            probs, values = self._probs_and_values(seen, output.detach())
        self.on_block(BlockAttention(self.name, probs, values))
        if self.outputs is None:
            return None
        if not output.requires_grad:
            output = output.detach().requires_grad_(True)
        self.outputs.outputs.append(output)
        return (output, *inputs[1:])

    def _probs_and_values(
        self, seen: dict[str, torch.Tensor], output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        work = torch.promote_types(seen["q"].dtype, torch.float32)  # float32 at least
        q, k, qkv = seen["q"].to(work), seen["k"].to(work), seen["qkv"]
        if q.ndim != 4 or q.shape != k.shape or output.ndim != 3:
            raise ValueError(self._unreadable(f"q is {tuple(q.shape)}, k {tuple(k.shape)}"))
        n, heads, tokens, dim = q.shape
        if qkv.shape != (n, tokens, 3 * heads * dim):
            raise ValueError(self._unreadable(f"qkv is {tuple(qkv.shape)}"))
        values = qkv.reshape(n, tokens, 3, heads, dim)[:, :, 2].transpose(1, 2).to(work)
        queries = q[:, :, :1] if self.class_rows_only else q
        probs = ((queries * float(self.module.scale)) @ k.transpose(-2, -1)).softmax(dim=-1)
        checked = [0] if self.class_rows_only else [0, tokens - 1]
        found = output.reshape(n, tokens, heads, dim).transpose(1, 2)[:, :, checked]
        if not matches_to_precision(probs[:, :, checked] @ values, found):
            raise ValueError(
                self._unreadable(
                    "softmax(q k^T * scale) v does not reproduce its output "
                    "(rotary embeddings, an attention mask or another layout)"
                )
            )
        return probs, values

    def _unreadable(self, why: str) -> str:
        return (
            f"attention module {self.name!r} ({type(self.module).__name__}) cannot be read: "
            f"{why}; {GRADCAM_HINT}"
        )


def matches_to_precision(expected: torch.Tensor, found: torch.Tensor) -> bool:
    """Whether the recomputed output matches the model's, to the model's precision."""
    tolerance = max(1e-4, 8 * torch.finfo(found.dtype).eps)
    found = found.to(expected.dtype)
    error = torch.linalg.vector_norm(expected - found, float("inf"))
    return bool(error <= tolerance * torch.linalg.vector_norm(found, float("inf")).clamp_min(1e-6))
