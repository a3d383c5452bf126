"""One capture forward that collects what a method needs, and nothing more.

- ``gradients``: the fast path, the graph only from the target layer to the score
  (``gradient_pass``).
- ``activations`` alone: one inference-mode forward with the layer hooked.
- neither (input-level methods): one inference-mode forward for the logits.
- ``forwards`` adds the module output sizes, for chunking the later masked forwards.
- ``attention``: the method's reader takes every block's attention during the forward (and,
  with ``gradients``, d(score)/d(attention output) from a backward pass through the blocks);
  with ``block scores``, each chosen block's own score and d(block score)/d(its attention).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from napari_gradcam.core.explain.attention_collect import collect_attention, collect_block_scores
from napari_gradcam.core.explain.batching import forward_bytes, run_model
from napari_gradcam.core.explain.context import LayerContext, Monitor
from napari_gradcam.core.explain.gradient_pass import layer_gradients
from napari_gradcam.core.explain.hooks import (
    Captured,
    OutputSizes,
    capture_layer,
    captured_activation,
    record_output_sizes,
)
from napari_gradcam.core.explain.methods.cam_method import CamMethod
from napari_gradcam.core.explain.model_layers import ModelLayers
from napari_gradcam.core.explain.targets import BoundTarget
from napari_gradcam.core.settings import ExplainSettings

Layer = tuple[str, nn.Module] | None


def collect(
    layers: ModelLayers,
    batch: torch.Tensor,
    method: CamMethod,
    layer: Layer,
    settings: ExplainSettings,
    target: BoundTarget,
    groups: int,
    monitor: Monitor,
) -> LayerContext:
    """Run the model of ``layers`` once on ``batch``; return the context ``method`` computes from.

    ``batch`` may hold ``groups`` flipped copies of the same images (``augment.FLIPS``); the
    target's weights are resolved on the first copy and flipped with the others, so every
    copy explains the same class or region.
    """
    model = layers.module
    name, module = layer if layer is not None else (None, None)
    if "attention" in method.needs:

        def targets_of(scored: torch.Tensor) -> torch.Tensor:
            return _weights(target, scored, groups)

        scored = "block scores" in method.needs
        collector = collect_block_scores if scored else collect_attention
        return collector(model, batch, method, target, targets_of, settings, monitor)
    recorder = (
        record_output_sizes(model, module) if "forwards" in method.needs else nullcontext(None)
    )
    with recorder as sizes:
        if "gradients" in method.needs:
            captured, gradients, logits, targets = layer_gradients(
                layers, batch, layer, target, groups
            )
        else:
            captured, logits = _forward(layers, batch, layer, target)
            gradients, targets = None, _weights(target, logits, groups)
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
        target=target,
        options=settings.options,
        bfloat16=settings.bfloat16,
        monitor=monitor,
        sample_bytes=sample,
        head_sample_bytes=head,
        layout=layout,
        native_activations=native,
    )


def _weights(target: BoundTarget, scored: torch.Tensor, groups: int) -> torch.Tensor:
    """The target's weights, resolved on the first of ``groups`` copies and flipped along."""
    return target.copies(target.weights(scored[: len(scored) // groups]), groups)


def _forward(
    layers: ModelLayers, batch: torch.Tensor, layer: Layer, target: BoundTarget
) -> tuple[Captured | None, torch.Tensor]:
    with torch.inference_mode():
        if layer is None:
            return None, run_model(layers.module, batch, target.head)
        name, module = layer
        check = layers.layout_check(name, batch)
        with capture_layer(module, name, check, with_grad=False) as captured:
            logits = run_model(layers.module, batch, target.head)
        captured_activation(captured, name)
        return captured, logits


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
