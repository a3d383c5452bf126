"""What a map method gets to work with: the captured layer, the model, settings and a monitor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from napari_gradcam.core.explain.layout import Layout
from napari_gradcam.core.explain.targets import BoundTarget, target_scores


class PatchTokenReader(Protocol):
    """What a method reads of an attention reader (``methods.attention.AttentionReader``)."""

    prefix: int
    grid: tuple[int, int]
    patch_size: tuple[int, int]

    def class_rows(self) -> torch.Tensor:
        """The class token's row (N, T), or one per head (N, heads, T)."""


ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


class ExplanationCancelled(Exception):
    """Raised when ``should_stop()`` returned true: the explanation stopped, nothing was kept.

    Not a ``ValueError``: a cancelled run is not bad input.
    """


@dataclass
class Monitor:
    """The run's resources: progress, cancel and memory between the steps of a long method.

    Attributes
    ----------
    progress : callable, optional
        ``progress(done, total)``, called after each step (e.g. each chunk of masked forwards).
    should_stop : callable, optional
        ``should_stop() -> bool``, asked before each step; true raises ``ExplanationCancelled``.
    memory_budget_mb : float, optional
        Memory the batched masked forwards of Score-CAM, Ablation-CAM and occlusion may use
        at once (a hard limit: too small for one sample is an error); ``None`` picks chunks
        of about 96 MB, at least one sample. It never changes the map.
    """

    progress: ProgressFn | None = None
    should_stop: StopFn | None = None
    memory_budget_mb: float | None = None
    done: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise ValueError(f"memory_budget_mb must be positive, got {self.memory_budget_mb}")

    def check(self) -> None:
        """Raise ``ExplanationCancelled`` when a stop was requested."""
        if self.should_stop is not None and self.should_stop():
            raise ExplanationCancelled("the explanation was cancelled")

    def start(self, total: int) -> None:
        """Begin a method of ``total`` steps (reported as ``progress(0, total)``)."""
        self.done, self.total = 0, max(int(total), 1)
        self.report()

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more as done and report."""
        self.done = min(self.done + steps, self.total)
        self.report()

    def finish(self) -> None:
        """Report completion, unless the last report already said so."""
        if self.done < self.total:
            self.advance(self.total - self.done)

    def report(self) -> None:
        """Call ``progress(done, total)`` when given."""
        if self.progress is not None:
            self.progress(self.done, self.total)


@dataclass(frozen=True)
class LayerContext:
    """Everything captured for one explanation, handed to a method's ``compute``.

    Attributes
    ----------
    model : torch.nn.Module
        The classifier, in eval mode with frozen parameters while the method runs.
    batch : torch.Tensor
        The preprocessed input (N, C, H, W).
    layer_name : str or None
        Name of the target layer (``None`` for methods that use no layer).
    activations : torch.Tensor or None
        Its output (N, K, h, w), detached; ``None`` without a layer.
    gradients : torch.Tensor or None
        d(target score)/d(activations), for methods that need them.
    logits : torch.Tensor
        What the target scores of the model's output (``target.head``), detached: logits
        (N, classes), similarities (N, 1) or dense logits (N, C, h, w).
    targets : torch.Tensor
        The target's weights ``W`` per image, the shape of ``logits``: the explained score is
        ``(logits * targets)`` summed per image.
    target : BoundTarget
        The explained target: its ``head`` scores the output of any forward.
    options : dataclass
        The method's own options (``ExplainSettings.options``).
    bfloat16 : bool
        Whether the masked forwards run in bfloat16 (``ExplainSettings.bfloat16``).
    monitor : Monitor
        Progress and cancel checks for long methods.
    sample_bytes : int
        Estimated peak memory of one sample's inference forward (for chunking).
    head_sample_bytes : int
        The same for the part of the forward after the target layer.
    layout : Layout or None
        How the layer's own output holds the map (``activations`` and ``gradients`` are
        already converted to (N, K, h, w), prefix tokens dropped); ``None`` without a layer.
    native_activations : torch.Tensor or None
        The layer's output in its own layout (with prefix tokens), for methods that write
        activations back as the layer's output (Ablation-CAM).
    attention : PatchTokenReader, optional
        What the attention methods read from the blocks, with the model's token facts.
    """

    model: nn.Module
    batch: torch.Tensor
    layer_name: str | None
    layer: nn.Module | None
    activations: torch.Tensor | None
    gradients: torch.Tensor | None
    logits: torch.Tensor
    targets: torch.Tensor
    target: BoundTarget
    options: Any = None
    bfloat16: bool = False
    monitor: Monitor = field(default_factory=Monitor)
    sample_bytes: int = 0
    head_sample_bytes: int = 0
    layout: Layout | None = None
    native_activations: torch.Tensor | None = None
    attention: PatchTokenReader | None = None

    def as_layer_output(self, nchw: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(M, K, h, w) maps of ``images`` (indices into the batch) in the layer's own layout.

        Prefix tokens are those of the captured output, unchanged.
        """
        if self.layout is None or self.native_activations is None:
            return nchw
        return self.layout.from_nchw(nchw, like=self.native_activations[images])

    def scores(self) -> torch.Tensor:
        """The explained score of each image (N,) from the captured logits."""
        return target_scores(self.logits, self.targets)
