"""d(score)/dA of attention modules from the gradient of their output; A is never kept.

Per head ``O = A V``, so ``dS/dA = (dS/dO) V^T`` (``attention_math.attention_gradient``). The
taps keep V and make the tensor that carries O a leaf of the graph; its gradient gives dS/dO.
Two layouts are read:

- timm's ``Attention`` (``qkv``, ``q_norm``, ``k_norm``, ``proj``): O itself, tapped by
  ``hooks.capture_attention``;
- ``nn.MultiheadAttention`` (torchvision, open_clip): its output ``Y = O W^T + b``, so
  ``dS/dO = (dS/dY) W``, with q, k and v from its input projection;
- Hugging Face's ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` layout (CLIP, SigLIP): O,
  the input of ``out_proj``.

Either way the probabilities are recomputed from q and k on the first and last query rows and
must reproduce the module's output, or the module is refused: its layout is never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from napari_gradcam.core.explain.hooks import (
    AttentionOutputs,
    BlockAttention,
    capture_attention,
    is_readable_attention,
    matches_to_precision,
    owned_forward_hook,
)
from napari_gradcam.core.explain.methods.attention_math import attention_gradient

LAYOUTS = (
    "it has none of the layouts read: timm's (qkv, q_norm, k_norm, proj), "
    "nn.MultiheadAttention or Hugging Face's (q_proj, k_proj, v_proj, out_proj)"
)
HF_PARTS = ("q_proj", "k_proj", "v_proj", "out_proj")
"""The projections of a Hugging Face attention module (with ``num_heads`` and ``scale``)."""
MULTIHEAD_ARGUMENTS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
"""``nn.MultiheadAttention.forward``'s first positional arguments."""


@dataclass
class TappedAttention:
    """What one attention module gave during the forward.

    Attributes
    ----------
    name : str
        The module's name in the model.
    values : torch.Tensor or None
        V (N, heads, T, d) in float32 at least, outside any graph.
    leaf : torch.Tensor or None
        The graph leaf whose gradient gives dS/dO: O (N, T, heads * d), or the output Y of a
        ``nn.MultiheadAttention`` in its own layout.
    out_weight : torch.Tensor or None
        W of ``Y = O W^T + b`` when ``leaf`` is Y.
    batch_first : bool
        Whether ``leaf`` is (N, T, ...) rather than (T, N, ...).
    """

    name: str
    values: torch.Tensor | None = None
    leaf: torch.Tensor | None = None
    out_weight: torch.Tensor | None = None
    batch_first: bool = True

    def attention_gradient(self, leaf_gradient: torch.Tensor) -> torch.Tensor:
        """dS/dA (N, heads, T, T) from dS/d(leaf)."""
        gradient = leaf_gradient if self.batch_first else leaf_gradient.transpose(0, 1)
        gradient = gradient.to(self.values.dtype)
        if self.out_weight is not None:
            gradient = gradient @ self.out_weight.to(self.values.dtype)
        n, heads, tokens, dim = self.values.shape
        per_head = gradient.reshape(n, tokens, heads, dim).transpose(1, 2)
        return attention_gradient(per_head, self.values)


class Taps:
    """The taps of one capture; ``taken()`` once the forward has run."""

    def __init__(self, modules: list[tuple[str, nn.Module]]) -> None:
        self.tapped = {name: TappedAttention(name) for name, _ in modules}
        self.read_order: list[str] = []
        self.outputs = AttentionOutputs()

    def keep_values(self, block: BlockAttention) -> None:
        """Take V of a timm-layout module (its O comes next, in ``outputs``)."""
        self.tapped[block.name].values = block.values
        self.read_order.append(block.name)

    def taken(self) -> list[TappedAttention]:
        """What every module gave, in the order given; ``ValueError`` for one that did not run."""
        for name, output in zip(self.read_order, self.outputs.outputs, strict=True):
            self.tapped[name].leaf = output
        missing = [name for name, tap in self.tapped.items() if tap.leaf is None]
        if missing:
            raise ValueError(f"attention module {missing[0]!r} did not run in the forward pass")
        return list(self.tapped.values())


@contextmanager
def attention_gradient_taps(modules: list[tuple[str, nn.Module]]) -> Iterator[Taps]:
    """Tap each ``(name, module)`` during the forwards inside; the hooks go on exit.

    ``nn.MultiheadAttention``, Hugging Face's and timm's layouts are read; any other module
    is refused (``ValueError``) before the forward.
    """
    taps = Taps(modules)
    timm = []
    with ExitStack() as stack:
        for name, module in modules:
            if isinstance(module, nn.MultiheadAttention):
                tap = MultiheadTap(taps.tapped[name], module)
            elif all(isinstance(getattr(module, p, None), nn.Linear) for p in HF_PARTS):
                tap = HuggingFaceTap(taps.tapped[name], module)
            elif is_readable_attention(module):
                timm.append((name, module))
                continue
            else:
                raise ValueError(_unreadable(name, type(module).__name__, LAYOUTS))
            for handle in tap.register():
                stack.callback(handle.remove)
        capture = capture_attention(timm, taps.keep_values, with_grad=True, class_rows_only=True)
        taps.outputs = stack.enter_context(capture)
        yield taps


class MultiheadTap:
    """The hooks on one ``nn.MultiheadAttention``: input kept, output checked and made a leaf.

    Raises (on construction, or in the forward)
    ------
    ValueError
        For separate key or value dimensions, added key/value biases or zero attention,
        cross-attention, or a mask: then ``softmax(q k^T / sqrt(d)) v`` is not its output.
    """

    def __init__(self, tapped: TappedAttention, module: nn.MultiheadAttention) -> None:
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                _unreadable(
                    tapped.name,
                    "MultiheadAttention",
                    "separate key/value sizes or added key/value tokens",
                )
            )
        self.tapped, self.module = tapped, module
        self.tokens: torch.Tensor | None = None

    def register(self) -> list[RemovableHandle]:
        """Hook the module (for the calling thread's forwards); the handles to remove."""
        return [
            owned_forward_hook(self.module, self._keep_input, pre=True, with_kwargs=True),
            owned_forward_hook(self.module, self._read_output, with_kwargs=True),
        ]

    def _keep_input(self, _module: nn.Module, args: tuple, kwargs: dict) -> None:
        given = dict(zip(MULTIHEAD_ARGUMENTS, args, strict=False)) | kwargs
        query = given.get("query")
        if not isinstance(query, torch.Tensor) or any(
            given.get(key) is not query for key in ("key", "value")
        ):
            raise ValueError(
                _unreadable(self.tapped.name, "MultiheadAttention", "it is not self-attention")
            )
        if any(given.get(mask) is not None for mask in ("key_padding_mask", "attn_mask")):
            raise ValueError(
                _unreadable(self.tapped.name, "MultiheadAttention", "it is called with a mask")
            )
        query = query if self.module.batch_first else query.transpose(0, 1)
        self.tokens = query.detach()

    def _read_output(self, _module: nn.Module, _args: tuple, _kwargs: dict, output: tuple) -> tuple:
        tokens, self.tokens = self.tokens, None
        attended, weights = output
        found = attended if self.module.batch_first else attended.transpose(0, 1)
        with torch.no_grad():
            self.tapped.values = self._checked_values(tokens, found.detach())
        leaf = attended.detach().requires_grad_(True)
        self.tapped.leaf, self.tapped.batch_first = leaf, self.module.batch_first
        self.tapped.out_weight = self.module.out_proj.weight.detach()
        return leaf, weights

    def _checked_values(self, tokens: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        """V (N, heads, T, d), once the first and last query rows reproduce the output."""
        module = self.module
        work = torch.promote_types(tokens.dtype, torch.float32)
        n, count, width = tokens.shape
        heads = module.num_heads
        weights = module.in_proj_weight.to(work).chunk(3)
        bias = module.in_proj_bias
        biases = (None,) * 3 if bias is None else bias.to(work).chunk(3)

        def per_head(x: torch.Tensor, part: int) -> torch.Tensor:
            projected = F.linear(x.to(work), weights[part], biases[part])
            return projected.reshape(n, x.shape[1], heads, width // heads).transpose(1, 2)

        rows = [0, count - 1]
        queries = per_head(tokens[:, rows], 0)
        keys, values = per_head(tokens, 1), per_head(tokens, 2)
        logits = queries @ keys.transpose(-2, -1) * (width // heads) ** -0.5
        probs = logits.softmax(dim=-1)
        mixed = (probs @ values).transpose(1, 2).reshape(n, len(rows), width)
        out_bias = None if module.out_proj.bias is None else module.out_proj.bias.to(work)
        expected = F.linear(mixed, module.out_proj.weight.to(work), out_bias)
        if not matches_to_precision(expected, found[:, rows]):
            raise ValueError(
                _unreadable(
                    self.tapped.name,
                    "MultiheadAttention",
                    "softmax(q k^T / sqrt(d)) v does not reproduce its output",
                )
            )
        return values


class HuggingFaceTap:
    """The hooks on one Hugging Face attention module: q, k, v kept, O checked and made a leaf.

    Raises (in the forward)
    ------
    ValueError
        When ``softmax(q k^T * scale) v`` does not reproduce the input of ``out_proj`` (a mask,
        rotary embeddings, another layout).
    """

    def __init__(self, tapped: TappedAttention, module: nn.Module) -> None:
        self.tapped, self.module = tapped, module
        self.seen: dict[str, torch.Tensor] = {}

    def register(self) -> list[RemovableHandle]:
        """Hook the module (for the calling thread's forwards); the handles to remove."""
        module = self.module
        return [
            *(owned_forward_hook(getattr(module, f"{p}_proj"), self._keep(p)) for p in "qkv"),
            owned_forward_hook(module.out_proj, self._read, pre=True),
        ]

    def _keep(self, key: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self.seen[key] = output.detach()

        return hook

    def _read(self, _module: nn.Module, inputs: tuple) -> tuple:
        seen, self.seen = self.seen, {}
        mixed = inputs[0]
        if set(seen) != {"q", "k", "v"} or mixed.ndim != 3:
            raise ValueError(
                _unreadable(
                    self.tapped.name, type(self.module).__name__, "q, k, v or O did not appear"
                )
            )
        with torch.no_grad():
            self.tapped.values = self._checked_values(seen, mixed.detach())
        leaf = mixed.detach().requires_grad_(True)
        self.tapped.leaf = leaf
        return (leaf, *inputs[1:])

    def _checked_values(self, seen: dict[str, torch.Tensor], found: torch.Tensor) -> torch.Tensor:
        """V (N, heads, T, d), once the first and last query rows reproduce O."""
        work = torch.promote_types(found.dtype, torch.float32)
        n, count, width = found.shape
        heads = int(self.module.num_heads)

        def per_head(x: torch.Tensor) -> torch.Tensor:
            return x.to(work).reshape(n, x.shape[1], heads, width // heads).transpose(1, 2)

        rows = [0, count - 1]
        queries, keys, values = (
            per_head(seen["q"][:, rows]),
            per_head(seen["k"]),
            per_head(seen["v"]),
        )
        probs = (queries @ keys.transpose(-2, -1) * float(self.module.scale)).softmax(dim=-1)
        expected = (probs @ values).transpose(1, 2).reshape(n, len(rows), width)
        if not matches_to_precision(expected, found[:, rows]):
            why = "softmax(q k^T * scale) v does not reproduce its output"
            raise ValueError(_unreadable(self.tapped.name, type(self.module).__name__, why))
        return values


def _unreadable(name: str, kind: str, why: str) -> str:
    """Why attention module ``name`` of class ``kind`` cannot be read, and what to do."""
    return (
        f"attention module {name!r} ({kind}) cannot be read: {why}; "
        "use method='gradcam' on a block's layer instead"
    )
