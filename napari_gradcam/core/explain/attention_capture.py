"""Read each transformer block's attention probabilities from q and k, without changing the model.

timm's ``Attention`` computes ``qkv = self.qkv(x)`` (laid out (N, T, 3, heads, d)), passes q and
k through the ``q_norm`` / ``k_norm`` modules (``nn.Identity`` without QK-norm), then attends,
often with fused ``scaled_dot_product_attention`` that never materialises the probabilities,
and hands ``O = A V`` (N, T, heads * d) to ``norm`` (or ``proj``). Forward hooks on ``qkv``,
``q_norm`` and ``k_norm`` see v, q and k; a pre-hook on the output module sees O. The
probabilities are recomputed as ``softmax(q k^T * scale)`` and checked: ``A V`` must equal O
on the class token's row and the last token's row (each recomputed row is checked when only
the class rows are computed), or the module is refused (rotary embeddings, masks, another
layout), never guessed. Checking two rows, not all, keeps the check at 2/T of the cost.

Nothing on the model is changed: no attribute is set, the hooks are removed on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

READABLE_PARTS = ("qkv", "q_norm", "k_norm", "proj")
"""Submodules an attention module needs to be read (timm's names), besides ``num_heads`` and
``scale``."""
GRADCAM_HINT = "use method='gradcam' on a block's layer instead"


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
        if _is_readable(module) and not any(_within(name, outer) for outer, _ in readable):
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


def _is_readable(module: nn.Module) -> bool:
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

    def register(self) -> list[torch.utils.hooks.RemovableHandle]:
        module = self.module
        out = module.norm if isinstance(getattr(module, "norm", None), nn.Module) else module.proj
        return [
            module.qkv.register_forward_hook(self._keep("qkv")),
            module.q_norm.register_forward_hook(self._keep("q")),
            module.k_norm.register_forward_hook(self._keep("k")),
            out.register_forward_pre_hook(self._read),
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
        if not _close(probs[:, :, checked] @ values, found):
            raise ValueError(
                self._unreadable("softmax(q k^T * scale) v does not reproduce its output "
                                 "(rotary embeddings, an attention mask or another layout)")
            )  # fmt: skip
        return probs, values

    def _unreadable(self, why: str) -> str:
        return (
            f"attention module {self.name!r} ({type(self.module).__name__}) cannot be read: "
            f"{why}; {GRADCAM_HINT}"
        )


def _close(expected: torch.Tensor, found: torch.Tensor) -> bool:
    """Whether the recomputed output matches the model's, to the model's precision."""
    tolerance = max(1e-4, 8 * torch.finfo(found.dtype).eps)
    found = found.to(expected.dtype)
    error = torch.linalg.vector_norm(expected - found, float("inf"))
    return bool(error <= tolerance * torch.linalg.vector_norm(found, float("inf")).clamp_min(1e-6))
