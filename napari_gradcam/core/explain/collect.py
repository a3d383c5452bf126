"""One capture forward that collects what a method needs, and nothing more.

- ``gradients``: the fast path, the graph only from the target layer to the score.
- ``activations`` alone: one inference-mode forward with the layer hooked.
- neither (input-level methods): one inference-mode forward for the logits.
- ``forwards`` adds the module output sizes, for chunking the later masked forwards.
- ``attention``: the method's reader takes every block's attention during the forward (and,
  with ``gradients``, d(score)/d(attention output) from a backward pass through the blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.attention_collect import collect_attention
from napari_gradcam.core.explain.batching import (
    OutputSizes,
    forward_bytes,
    record_output_sizes,
    run_model,
)
from napari_gradcam.core.explain.capture import Captured, capture_layer
from napari_gradcam.core.explain.context import LayerContext, MethodSettings, Monitor
from napari_gradcam.core.explain.layouts import Layout, layer_layout
from napari_gradcam.core.explain.methods import CamMethod
from napari_gradcam.core.explain.targets import Target, resolve_targets, target_scores

Layer = tuple[str, nn.Module] | None


def collect(
    model: nn.Module,
    batch: torch.Tensor,
    method: CamMethod,
    layer: Layer,
    target: Target,
    card: ModelCard,
    *,
    groups: int = 1,
    settings: MethodSettings | None = None,
    monitor: Monitor | None = None,
) -> LayerContext:
    """Run the model once on ``batch`` and return the context ``method`` computes from.

    ``batch`` may hold ``groups`` copies of the same images (e.g. flipped); the targets are
    resolved on the first copy and repeated, so every copy explains the same class.
    """
    name, module = layer if layer is not None else (None, None)
    if "attention" in method.needs:
        targets_of = partial(_targets, target=target, card=card, groups=groups)
        return collect_attention(
            model, batch, method, targets_of, settings or MethodSettings(), monitor or Monitor()
        )
    recorder = (
        record_output_sizes(model, module) if "forwards" in method.needs else nullcontext(None)
    )
    with recorder as sizes:
        if "gradients" in method.needs:
            captured, gradients, logits, targets = layer_gradients(
                model, batch, layer, target, card, groups
            )
        else:
            captured, logits = _forward(model, batch, layer)
            gradients, targets = None, _targets(logits, target, card, groups)
    native, layout = (captured.activation, captured.layout) if captured else (None, None)
    activations = layout.to_nchw(native) if layout else None
    sample, head = _sample_bytes(batch, native, sizes)
    return LayerContext(
        model=model,
        batch=batch,
        layer_name=name,
        layer=module,
        activations=activations,
        gradients=layout.to_nchw(gradients) if gradients is not None else None,
        logits=logits,
        targets=targets,
        settings=settings or MethodSettings(),
        monitor=monitor or Monitor(),
        sample_bytes=sample,
        head_sample_bytes=head,
        layout=layout,
        native_activations=native,
    )


def _targets(logits: torch.Tensor, target: Target, card: ModelCard, groups: int) -> torch.Tensor:
    first = resolve_targets(logits[: len(logits) // groups], target, card)
    return first.repeat(groups)


def layout_check(model: nn.Module, name: str, batch: torch.Tensor) -> Callable[..., Layout]:
    """``layout_of`` for ``capture_layer``: the layer's layout on this batch, or ``ValueError``."""
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    return lambda output: layer_layout(model, name, output, size, len(batch))


def _forward(
    model: nn.Module, batch: torch.Tensor, layer: Layer
) -> tuple[Captured | None, torch.Tensor]:
    with torch.inference_mode():
        if layer is None:
            return None, run_model(model, batch)
        name, module = layer
        check = layout_check(model, name, batch)
        with capture_layer(module, name, with_grad=False, layout_of=check) as captured:
            logits = run_model(model, batch)
        _captured_activation(captured, name)
        return captured, logits


def layer_gradients(
    model: nn.Module,
    batch: torch.Tensor,
    layer: tuple[str, nn.Module],
    target: Target,
    card: ModelCard,
    groups: int = 1,
) -> tuple[Captured, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fast path: graph only from the target layer to the score; nothing kept after.

    Returns the capture (the layer's output in its own layout, and that layout), the target
    scores' gradients in the same layout, the logits and the targets. Refuses (``ValueError``)
    a layer the score does not depend on, or whose patch tokens get no gradient.
    """
    name, module = layer
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        capture_layer(module, name, layout_of=layout_check(model, name, batch)) as captured,
    ):
        logits = run_model(model, batch)
        activation = _captured_activation(captured, name)
        targets = _targets(logits, target, card, groups)
        scores, _ = target_scores(logits, targets)
        if not scores.requires_grad:
            raise ValueError(_off_path_message(name))
        (gradients,) = torch.autograd.grad(scores.sum(), activation, allow_unused=True)
    if gradients is None or _unreached_tokens(captured.layout, gradients):
        raise ValueError(_off_path_message(name, captured.layout))
    captured.activation = activation.detach()
    return captured, gradients, logits.detach(), targets


def _captured_activation(captured: Captured, name: str) -> torch.Tensor:
    if captured.activation is None:
        raise ValueError(f"layer {name!r} did not run in the forward pass; choose another")
    return captured.activation


def _unreached_tokens(layout: Layout, gradients: torch.Tensor) -> bool:
    """Whether no gradient reaches the patch tokens of a token layer (a silently empty map)."""
    return layout.kind == "tokens" and not bool(layout.to_nchw(gradients).any())


def _off_path_message(name: str, layout: Layout | None = None) -> str:
    if layout is not None and layout.kind == "tokens":
        return (
            f"the class score gets no gradient from the patch tokens of layer {name!r} (a "
            "class-token head reads only the class token after the last attention); choose "
            "an earlier layer, e.g. the last block's norm1, or leave the layer to the default"
        )
    return (
        f"the output does not depend on layer {name!r}; choose a layer on the path to the "
        "classifier"
    )


def _sample_bytes(
    batch: torch.Tensor, activations: torch.Tensor | None, sizes: OutputSizes | None
) -> tuple[int, int]:
    """Peak bytes of one sample's whole forward and of its head (after the layer)."""
    if sizes is None:
        return 0, 0
    hooked = sizes.largest or None
    whole = forward_bytes(batch[0].nbytes, hooked)
    if activations is None:
        return whole, 0
    layer_bytes = activations[0].nbytes
    return whole, forward_bytes(layer_bytes, max(sizes.largest_after_layer, layer_bytes))
