"""The gradient path: the graph only from the target layer to the score, in memory-sized chunks.

The target layer's output is made the autograd leaf (parameters do not require grad), so the
graph holds only what the layers after it save for backward. Behind a convolutional
network's last map that is a pooling and a linear head: nothing. Behind a transformer's
``blocks[-1].norm1`` it is a whole block (q, k, v, the MLP's hidden activation) plus its
backward transients: per image about 1.6x an inference forward's peak on ViT-S/16.

So the images run in chunks whose graph stays within the inference forward's peak for the
whole batch (``gradient_chunk``). In eval mode every image's gradient depends on that image
alone, so the maps are the same; the forwards' total work is the same too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from napari_gradcam.core.explain.batching import forward_bytes, run_model
from napari_gradcam.core.explain.hooks import (
    Captured,
    capture_layer,
    captured_activation,
    record_output_sizes,
)
from napari_gradcam.core.explain.layout import Layout
from napari_gradcam.core.explain.model_layers import ModelLayers
from napari_gradcam.core.explain.targets import (
    BoundTarget,
    check_target_count,
    output_tensor,
    target_scores,
)

BACKWARD_LIVE = 2
"""Gradients alive at once in the backward pass, in units of the head's largest output."""


def layer_gradients(
    layers: ModelLayers,
    batch: torch.Tensor,
    layer: tuple[str, nn.Module],
    target: BoundTarget,
    groups: int = 1,
) -> tuple[Captured, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's output and the target scores' gradients there, nothing kept after.

    ``layers`` is the model's (``model_layers``). ``batch`` may hold ``groups`` flipped copies
    of the same images; the target's weights are resolved on the first copy and flipped along.
    Runs in chunks of ``gradient_chunk`` images.

    Returns the capture (the layer's output in its own layout, and that layout), the
    gradients in the same layout, what the target scores (``target.head`` of the output) and
    the target's weights. Refuses (``ValueError``) a layer the score does not depend on, or
    whose patch tokens get no gradient.
    """
    name, _ = layer
    firsts = len(batch) // groups
    check_target_count(target.target, firsts)
    size = gradient_chunk(layers, layer, batch)
    parts: list[tuple[Captured, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    first_targets: list[torch.Tensor] = []
    for start in range(0, len(batch), size):
        stop = min(start + size, len(batch))
        chunk_targets = _chunk_targets(target, start, stop, firsts, first_targets)
        parts.append(_chunk_gradients(layers, batch[start:stop], layer, target, chunk_targets))
    captured = parts[0][0]
    captured.activation = torch.cat([part[0].activation for part in parts])
    gradients = torch.cat([part[1] for part in parts])
    if _unreached_tokens(captured.layout, gradients):
        raise ValueError(_off_path_message(name, captured.layout))
    logits, targets = (torch.cat([part[i] for part in parts]) for i in (2, 3))
    return captured, gradients, logits, targets


def gradient_chunk(layers: ModelLayers, layer: tuple[str, nn.Module], batch: torch.Tensor) -> int:
    """Images per gradient pass: the graph of a chunk fits one inference forward of the batch.

    Estimated per image from a cached single-image dry run (``head_profile``): the forward's
    peak (``batching.forward_bytes``) and the graph's (outputs after the layer, plus
    ``BACKWARD_LIVE`` of the largest of them). At least one image.
    """
    forward_peak, graph_peak = head_profile(layers, layer, batch)
    return max(min(len(batch) * forward_peak // max(graph_peak, 1), len(batch)), 1)


def head_profile(
    layers: ModelLayers, layer: tuple[str, nn.Module], batch: torch.Tensor
) -> tuple[int, int]:
    """Per-image bytes: (inference forward peak, gradient graph peak behind ``layer``).

    One dry run on the batch's first image under inference mode, cached by ``layers`` per
    layer, image shape, dtype and device. The graph counts the new outputs of the modules after
    the layer (``OutputSizes.new_after_layer``).
    """
    name, module = layer

    def profile() -> tuple[int, int]:
        with torch.inference_mode(), record_output_sizes(layers.module, module) as sizes:
            run_model(layers.module, batch[:1], output_tensor)
        graph = sizes.new_after_layer + BACKWARD_LIVE * sizes.largest_after_layer
        return (forward_bytes(batch[0].nbytes, sizes.largest or None), graph)

    key = ("head profile", name, tuple(batch.shape[1:]), batch.dtype, batch.device)
    return layers.cached(key, profile)


def _chunk_gradients(
    layers: ModelLayers,
    chunk: torch.Tensor,
    layer: tuple[str, nn.Module],
    target: BoundTarget,
    targets_of: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[Captured, torch.Tensor, torch.Tensor, torch.Tensor]:
    name, module = layer
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        capture_layer(module, name, layers.layout_check(name, chunk)) as captured,
    ):
        logits = run_model(layers.module, chunk, target.head)
        activation = captured_activation(captured, name)
        targets = targets_of(logits.detach())
        scores = target_scores(logits, targets)
        if not scores.requires_grad:
            raise ValueError(_off_path_message(name))
        (gradients,) = torch.autograd.grad(scores.sum(), activation, allow_unused=True)
    if gradients is None:
        raise ValueError(_off_path_message(name, captured.layout))
    captured.activation = activation.detach()
    return captured, gradients, logits.detach(), targets


def _chunk_targets(
    target: BoundTarget,
    start: int,
    stop: int,
    firsts: int,
    first_targets: list[torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``targets_of(scored)`` for images ``start:stop`` of a batch of copies of ``firsts``.

    The first copy's weights are resolved from its output (and kept in ``first_targets``);
    the other copies take them flipped as their image was, so every copy explains the same
    class or region.
    """

    def targets_of(scored: torch.Tensor) -> torch.Tensor:
        own = max(min(stop, firsts) - start, 0)
        own_targets = target.weights(scored[:own], first=start)
        first_targets.append(own_targets)
        resolved = torch.cat(first_targets)
        copies = [
            target.flipped(resolved[i % firsts : i % firsts + 1], i // firsts)
            for i in range(start + own, stop)
        ]
        return torch.cat([own_targets, *copies])

    return targets_of


def _unreached_tokens(layout: Layout | None, gradients: torch.Tensor) -> bool:
    """Whether no gradient reaches the patch tokens of a token layer (a silently empty map)."""
    if layout is None or layout.kind != "tokens":
        return False
    return not bool(layout.to_nchw(gradients).any())


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
