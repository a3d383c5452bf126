"""How much each tile pushed a slide prediction: attention, gradient x embedding, IG.

Attention says where the aggregator looked; it is not attribution (a tile can be looked at and
still push against the class). Gradient x embedding and integrated gradients are signed: positive
for the class, negative against it. All functions take one bag of tile embeddings (N, D).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.explain.hooks import frozen_model, owned_forward_hook

BaselineKind = Literal["zero", "mean"]


@dataclass(frozen=True)
class IntegratedGradients:
    """Integrated-gradients tile scores and how well they add up.

    Attributes
    ----------
    scores : numpy.ndarray
        (N,) signed attribution of each tile.
    logit, baseline_logit : float
        The target logit at the embeddings and at the baseline.
    completeness_error : float
        ``|sum(scores) - (logit - baseline_logit)|`` relative to ``|logit - baseline_logit|``
        (Sundararajan et al. 2017's completeness; small when the integral is well resolved).
    """

    scores: np.ndarray
    logit: float
    baseline_logit: float
    completeness_error: float


def slide_logit(aggregator: nn.Module, embeddings: torch.Tensor, target: int) -> torch.Tensor:
    """The target logit of one bag (N, D) as a 0-d tensor (graph kept when inputs need grad)."""
    logits = aggregator(embeddings[None])
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != 1:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
        raise ValueError(f"the aggregator returned {shape}; expected logits (1, classes)")
    if not 0 <= target < logits.shape[1]:
        raise ValueError(f"class {target} is out of range: the slide model has {logits.shape[1]}")
    return logits[0, target]


def offers_attention(aggregator: nn.Module) -> bool:
    """Whether the aggregator's class has ``attention_weights(embeddings)`` (not a submodule).

    Like CLAM's ``attention_only`` or slideflow's ``calculate_attention``, it maps (B, N, D)
    embeddings to the softmax attention (B, N, branches) over the tiles it pools with.
    """
    return callable(getattr(type(aggregator), "attention_weights", None))


def attention_scores(
    aggregator: nn.Module, embeddings: torch.Tensor, module_name: str | None, branch: int = 0
) -> np.ndarray:
    """Softmax attention (N,) over the tiles of one bag (N, D), for one ``branch``.

    Read from the aggregator's ``attention_weights`` when it offers it; else the softmax over
    the tiles of the raw scores (1, N, branches) or (N, branches) the named module outputs (a
    tuple's first element counts), as the aggregator pools.
    """
    if offers_attention(aggregator):
        with frozen_model(aggregator), torch.inference_mode():
            weights = aggregator.attention_weights(embeddings[None])
        return _branch(weights, "attention_weights", len(embeddings), branch, softmax=False)
    modules = dict(aggregator.named_modules())
    if module_name not in modules or not module_name:
        raise ValueError(
            f"the aggregator offers no attention_weights method and has no module "
            f"{module_name!r} to read it from; its modules: "
            f"{', '.join(name for name in modules if name)}"
        )
    seen: list[torch.Tensor] = []

    def record(_module: nn.Module, _inputs: tuple, output: object) -> None:
        seen.append(output[0] if isinstance(output, (tuple, list)) else output)

    handle = owned_forward_hook(modules[module_name], record)
    try:
        with frozen_model(aggregator), torch.inference_mode():
            aggregator(embeddings[None])
    finally:
        handle.remove()
    if len(seen) != 1 or not isinstance(seen[0], torch.Tensor):
        raise ValueError(f"module {module_name!r} must run once per forward and output a tensor")
    return _branch(seen[0], f"module {module_name!r}", len(embeddings), branch, softmax=True)


def _branch(
    scores: torch.Tensor, origin: str, n_tiles: int, branch: int, *, softmax: bool
) -> np.ndarray:
    """One branch (N,) of (1, N, branches), (N, branches) or (N,) scores, its softmax if raw."""
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"{origin} must output a tensor, got {type(scores).__name__}")
    shape = tuple(scores.shape)
    scores = scores[0] if scores.ndim == 3 and scores.shape[0] == 1 else scores
    scores = scores[:, None] if scores.ndim == 1 else scores
    if scores.ndim != 2 or scores.shape[0] != n_tiles:
        raise ValueError(
            f"{origin} outputs {shape}, not attention scores for {n_tiles} tiles (tiles, "
            "branches); name the module that scores the tiles"
        )
    if not 0 <= branch < scores.shape[1]:
        raise ValueError(f"{origin} has {scores.shape[1]} branches; got branch {branch}")
    chosen = scores[:, branch].float()
    return (torch.softmax(chosen, dim=0) if softmax else chosen).cpu().numpy()


def gradient_x_embedding(
    aggregator: nn.Module, embeddings: torch.Tensor, target: int
) -> tuple[np.ndarray, torch.Tensor]:
    """Signed tile scores ``sum_d e_id * dY/de_id`` (N,) and the gradient dY/de (N, D)."""
    with frozen_model(aggregator), torch.enable_grad():
        leaf = embeddings.detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(slide_logit(aggregator, leaf, target), leaf)
    scores = (gradient * embeddings).sum(dim=1)
    return scores.detach().float().cpu().numpy(), gradient.detach()


def integrated_gradients(
    aggregator: nn.Module,
    embeddings: torch.Tensor,
    target: int,
    *,
    baseline: BaselineKind = "zero",
    steps: int = 32,
    tolerance: float = 0.005,
    max_steps: int = 512,
) -> IntegratedGradients:
    """Integrated gradients (Sundararajan et al., ICML 2017) of the target logit per tile.

    ``IG_i = sum_d (e_id - b_id) * integral_0^1 dY/de_id(b + a (e - b)) da``, the integral by
    Gauss-Legendre quadrature. Completeness (the scores sum to ``Y(e) - Y(b)``) measures the
    quadrature's error: the number of nodes starts at ``steps`` and doubles until the relative
    error is within ``tolerance`` or ``max_steps`` is reached (ReLU kinks in an aggregator need
    more nodes than a smooth one). The baseline is zeros, or every tile set to the bag's mean
    embedding.
    """
    if not 1 <= steps <= max_steps:
        raise ValueError(f"steps must be between 1 and max_steps ({max_steps}), got {steps}")
    if baseline not in ("zero", "mean"):
        raise ValueError(f"unknown baseline {baseline!r}; use 'zero' or 'mean'")
    start = torch.zeros_like(embeddings)
    if baseline == "mean":
        start = embeddings.mean(dim=0, keepdim=True).expand_as(embeddings)
    with frozen_model(aggregator):
        with torch.no_grad():
            ends = [float(slide_logit(aggregator, x, target)) for x in (embeddings, start)]
        change = ends[0] - ends[1]
        while True:
            scores = _path_integral(aggregator, start, embeddings - start, target, steps)
            error = abs(float(scores.sum()) - change) / max(abs(change), 1e-12)
            if error <= tolerance or steps * 2 > max_steps:
                return IntegratedGradients(scores, ends[0], ends[1], error)
            steps *= 2


def _path_integral(
    aggregator: nn.Module, start: torch.Tensor, delta: torch.Tensor, target: int, steps: int
) -> np.ndarray:
    """``sum_d delta_id * integral of dY/de_id`` along the straight path, ``steps`` nodes."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = (nodes + 1) / 2, weights / 2  # from [-1, 1] to [0, 1]
    total = torch.zeros_like(delta)
    with torch.enable_grad():
        for alpha, weight in zip(alphas, weights, strict=True):
            point = (start + float(alpha) * delta).detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(slide_logit(aggregator, point, target), point)
            total += float(weight) * gradient
    return (delta * total).sum(dim=1).detach().float().cpu().numpy()
