"""The capture forward of the attention methods: every block's attention, read as it runs.

The method's reader (``methods.attention``) takes each block's probabilities during one
forward (inference mode); a gradient method also gets d(score)/dO of every attention output
from one backward pass through the blocks. LeGrad's reader (``methods.legrad``) gets each
chosen block's own score and the gradient of that score for the block's attention, from one
forward and one backward through the chosen blocks. Progress counts blocks; cancel is
honoured between them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from napari_gradcam.core.explain.attention_gradients import attention_gradient_taps
from napari_gradcam.core.explain.batching import run_model
from napari_gradcam.core.explain.context import LayerContext, Monitor, PatchTokenReader
from napari_gradcam.core.explain.hooks import (
    GRADCAM_HINT,
    AttentionOutputs,
    BlockAttention,
    capture_attention,
)
from napari_gradcam.core.explain.methods.cam_method import CamMethod
from napari_gradcam.core.explain.score_projection import scored_blocks
from napari_gradcam.core.explain.targets import BoundTarget, target_scores
from napari_gradcam.core.settings import ExplainSettings

TargetsFn = Callable[[torch.Tensor], torch.Tensor]


def collect_attention(
    model: nn.Module,
    batch: torch.Tensor,
    method: CamMethod,
    target: BoundTarget,
    targets_of: TargetsFn,
    settings: ExplainSettings,
    monitor: Monitor,
) -> LayerContext:
    """One forward reading every block's attention (and a backward for gradient methods).

    ``target.head`` scores the output; ``targets_of(scored)`` gives its weights per image.
    The reader refuses a model it cannot explain before the forward runs.
    """
    reader = method.reader(model, batch, settings.options)
    modules = reader.modules
    with_grad = reader.wants_gradients
    monitor.start(len(modules))

    def read(block: BlockAttention) -> None:
        monitor.check()
        reader.read(block)
        monitor.advance()

    capture = capture_attention(
        modules, read, with_grad=with_grad, class_rows_only=reader.class_rows_only
    )
    grad_mode = torch.enable_grad() if with_grad else nullcontext()
    with torch.inference_mode(not with_grad), grad_mode, capture as taps:
        logits = run_model(model, batch, target.head)
        targets = targets_of(logits)
        if with_grad:
            reader.read_gradients(_output_gradients(target_scores(logits, targets), taps))
    return _attention_context(model, batch, reader, logits, targets, target, settings, monitor)


def collect_block_scores(
    model: nn.Module,
    batch: torch.Tensor,
    method: CamMethod,
    target: BoundTarget,
    targets_of: TargetsFn,
    settings: ExplainSettings,
    monitor: Monitor,
) -> LayerContext:
    """One forward scoring each chosen block through the model's head, one backward (LeGrad).

    Each block's projected output is scored as the model's output is: ``target.head``, then
    the weights ``targets_of`` gives for the model's output. The chosen blocks' graphs are
    disjoint (``scored_blocks``), so the gradient of the sum of their scores gives each
    block's attention the gradient of that block's own score.
    """
    reader = method.reader(model, batch, settings.options)
    monitor.start(len(reader.blocks))

    def scored() -> None:
        monitor.check()
        monitor.advance()

    blocks = scored_blocks(reader.tower, reader.blocks, target.head, scored)
    with torch.enable_grad(), attention_gradient_taps(reader.attentions) as taps, blocks as found:
        logits = run_model(model, batch, target.head)
        found.check(reader.tower, logits)
        targets = targets_of(logits)
        score = sum(target_scores(block, targets).sum() for block in found.projected)
        tapped = taps.taken()
        if not score.requires_grad:
            raise ValueError(f"the output does not depend on the attention blocks; {GRADCAM_HINT}")
        leaves = [tap.leaf for tap in tapped]
        reader.read_gradients(tapped, torch.autograd.grad(score, leaves, allow_unused=True))
    return _attention_context(model, batch, reader, logits, targets, target, settings, monitor)


def _attention_context(
    model: nn.Module,
    batch: torch.Tensor,
    reader: PatchTokenReader,
    logits: torch.Tensor,
    targets: torch.Tensor,
    target: BoundTarget,
    settings: ExplainSettings,
    monitor: Monitor,
) -> LayerContext:
    """The context of a method that reads the blocks' attention (no layer, no activations)."""
    return LayerContext(
        model=model,
        batch=batch,
        layer_name=reader.describe(),
        layer=None,
        activations=None,
        gradients=None,
        logits=logits.detach(),
        targets=targets,
        target=target,
        options=settings.options,
        bfloat16=settings.bfloat16,
        monitor=monitor,
        attention=reader,
    )


def _output_gradients(scores: torch.Tensor, taps: AttentionOutputs) -> list[torch.Tensor]:
    """d(sum of scores)/dO of every attention output (zeros for one the scores ignore)."""
    if not scores.requires_grad:
        raise ValueError(f"the output does not depend on the attention blocks; {GRADCAM_HINT}")
    gradients = torch.autograd.grad(scores.sum(), taps.outputs, allow_unused=True)
    pairs = zip(gradients, taps.outputs, strict=True)
    return [torch.zeros_like(output) if g is None else g for g, output in pairs]
