"""What a map method gets to work with: the captured layer, the model, settings and a monitor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import nn

from napari_gradcam.core.explain.layout import Layout
from napari_gradcam.core.explain.targets import target_scores


class AttentionReader(Protocol):
    """What a context holds of an attention method's reader (``methods.attention``)."""

    patch_size: tuple[int, int]


ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]
Baseline = Literal["blur", "mean"]


class ExplanationCancelled(Exception):
    """Raised when ``should_stop()`` returned true: the explanation stopped, nothing was kept.

    Not a ``ValueError``: a cancelled run is not bad input.
    """


@dataclass
class Monitor:
    """Reports progress and honours a cancel request between the steps of a long method.

    Attributes
    ----------
    progress : callable, optional
        ``progress(done, total)``, called after each step (e.g. each chunk of masked forwards).
    should_stop : callable, optional
        ``should_stop() -> bool``, asked before each step; true raises ``ExplanationCancelled``.
    """

    progress: ProgressFn | None = None
    should_stop: StopFn | None = None
    done: int = 0
    total: int = 1

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
class MethodSettings:
    """Options of the many-forward methods (Score-CAM, Ablation-CAM, occlusion) and of attention.

    Attributes
    ----------
    memory_budget_mb : float, optional
        Memory the batched masked forwards may use at once (a hard limit: too small for one
        sample is an error); ``None`` picks chunks of about 96 MB, at least one sample.
    occlusion_window : int, optional
        Side of the occluding square in input pixels; default an eighth of the shorter side.
    occlusion_stride : int, optional
        Step of the occlusion grid (the map's stride); default half the window.
    occlusion_baseline : {"blur", "mean"}
        What replaces the occluded pixels: the image blurred at the window's scale, or the
        normalisation mean (zeros of the normalised input), never white.
    bfloat16 : bool
        Run the masked forwards of Score-CAM and occlusion in bfloat16 on a copy of the model
        (see ``fast_forward``): about 2x faster on hardware with bfloat16 arithmetic, with
        scores rounded to about three significant digits.
    discard_ratio : float
        Attention rollout: the share of each row's weakest head-averaged attention weights
        set to zero in every block before the product (0: the paper's rollout).
    attention_head : int, optional
        Class-token attention: the head to show; ``None`` averages the heads.
    """

    memory_budget_mb: float | None = None
    occlusion_window: int | None = None
    occlusion_stride: int | None = None
    occlusion_baseline: Baseline = "blur"
    bfloat16: bool = False
    discard_ratio: float = 0.0
    attention_head: int | None = None

    def __post_init__(self) -> None:
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise ValueError(f"memory_budget_mb must be positive, got {self.memory_budget_mb}")
        for name in ("occlusion_window", "occlusion_stride"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
        if self.occlusion_baseline not in ("blur", "mean"):
            raise ValueError(
                f"unknown occlusion baseline {self.occlusion_baseline!r}; use 'blur' or 'mean'"
            )
        if not 0.0 <= self.discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must be in [0, 1), got {self.discard_ratio}")
        head = self.attention_head
        if head is not None and (not isinstance(head, int) or head < 0):
            raise ValueError(f"attention_head must be a head index >= 0, got {head!r}")


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
    layer : torch.nn.Module or None
        The target layer.
    activations : torch.Tensor or None
        Its output (N, K, h, w), detached; ``None`` without a layer.
    gradients : torch.Tensor or None
        d(target score)/d(activations), for methods that need them.
    logits : torch.Tensor
        The model's output (N, classes), detached.
    targets : torch.Tensor
        int64 (N,): the explained class per image.
    settings : MethodSettings
        Options of the forward-based methods.
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
    attention : AttentionReader, optional
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
    settings: MethodSettings = field(default_factory=MethodSettings)
    monitor: Monitor = field(default_factory=Monitor)
    sample_bytes: int = 0
    head_sample_bytes: int = 0
    layout: Layout | None = None
    native_activations: torch.Tensor | None = None
    attention: AttentionReader | None = None

    def as_layer_output(self, nchw: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(M, K, h, w) maps of ``images`` (indices into the batch) in the layer's own layout.

        Prefix tokens are those of the captured output, unchanged.
        """
        if self.layout is None or self.native_activations is None:
            return nchw
        return self.layout.from_nchw(nchw, like=self.native_activations[images])

    def scores(self) -> torch.Tensor:
        """The explained score of each image (N,) from the captured logits."""
        return target_scores(self.logits, self.targets)[0]
