"""Score every tile of a slide for a slide model's prediction, and check the scores by removal.

Attention (where the aggregator looked; not signed), gradient x embedding and integrated
gradients (signed: for the class when positive, against it when negative), from the pure core
``core.mil``. Optional CLAM-style percentile scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.explain.finite import check_finite
from napari_gradcam.core.mil.attribution import (
    attention_scores,
    gradient_x_embedding,
    integrated_gradients,
    offers_attention,
    slide_logit,
)
from napari_gradcam.core.mil.tile_deletion import removal_faithfulness
from napari_gradcam.models.slide_model import SlideModel, module_device

ATTENTION, GRADIENT, IG = "attention", "grad_x_embedding", "integrated_gradients"
SIGNED = {ATTENTION: False, GRADIENT: True, IG: True}
"""Each score's name and whether it is signed (drawn with a diverging colormap)."""


@dataclass(frozen=True)
class TileScores:
    """Every tile's scores for one class of one slide.

    Attributes
    ----------
    logits : numpy.ndarray
        (classes,) slide logits.
    scores : dict of str to numpy.ndarray
        (N,) per score name (``SIGNED``'s keys; attention only when the card names its module).
    gradient : torch.Tensor
        (N, D) gradient of the target logit with respect to each tile's embedding (drill-down).
    ig_completeness_error : float
        Relative completeness error of integrated gradients.
    """

    target: int
    logits: np.ndarray
    scores: dict[str, np.ndarray]
    gradient: torch.Tensor
    ig_completeness_error: float

    def percentiles(self) -> dict[str, np.ndarray]:
        """CLAM-style scores in [0, 1]: the rank percentile; signed scores keep their sign.

        Attention becomes its percentile among the slide's tiles; a signed score becomes
        ``sign(s) * percentile(|s|)``, so "for" and "against" stay apart.
        """
        return {name: _percentile(values, SIGNED[name]) for name, values in self.scores.items()}


def score_tiles(
    model: SlideModel,
    embeddings: np.ndarray,
    coords: np.ndarray | None = None,
    *,
    target: int | str | None = None,
    baseline: str = "zero",
) -> TileScores:
    """Attention, gradient x embedding and integrated gradients of every tile.

    Parameters
    ----------
    embeddings : numpy.ndarray
        (N, D) tile embeddings.
    coords : numpy.ndarray, optional
        (N, 2) level-0 tile corners (passed to aggregators that use them).
    target : int or str, optional
        Class to explain (default: the predicted class).
    baseline : str
        Integrated gradients' baseline: ``"zero"`` or ``"mean"`` (every tile the bag's mean).
    """
    aggregator = bound_aggregator(model, coords)
    bag = torch.as_tensor(embeddings, dtype=torch.float32, device=module_device(model.aggregator))
    with torch.inference_mode():
        logits = aggregator(bag[None])[0].float().cpu().numpy()
    check_finite(logits, "the slide model's logits", module=model.aggregator)
    index = _target_index(model, logits, target)
    scores: dict[str, np.ndarray] = {}
    if model.has_attention:
        reader = model.aggregator if offers_attention(model.aggregator) else aggregator
        name = model.attention_module and _module_name(model, model.attention_module)
        scores[ATTENTION] = attention_scores(reader, bag, name, model.attention_branch(index))
    scores[GRADIENT], gradient = gradient_x_embedding(aggregator, bag, index)
    ig = integrated_gradients(aggregator, bag, index, baseline=baseline)
    scores[IG] = ig.scores
    return TileScores(index, logits, scores, gradient, ig.completeness_error)


def faithfulness(model: SlideModel, embeddings: np.ndarray, scores: TileScores) -> dict[str, Any]:
    """Drop of the target logit when each score's top tiles are removed, against random ones."""
    if model.uses_coords:
        return {"skipped": "the aggregator uses tile coordinates; removal is not defined for it"}
    bag = torch.as_tensor(embeddings, dtype=torch.float32, device=module_device(model.aggregator))
    if len(bag) < 2:
        return {"skipped": "removing tiles needs at least two tiles"}
    out: dict[str, Any] = {}
    for name, values in scores.scores.items():
        curve = removal_faithfulness(model.aggregator, bag, scores.target, values)
        out[name] = {
            "removed": curve.removed.tolist(),
            "top_drop": _rounded(curve.top_drop),
            "random_drop": _rounded(curve.random_drop),
            "random_std": _rounded(curve.random_std),
            "gain_over_random": _rounded(curve.gain_over_random),
        }
    return out


class _WithCoords(nn.Module):
    """An aggregator with its tile coordinates bound: ``forward(bag)`` only."""

    def __init__(self, aggregator: nn.Module, coords: torch.Tensor) -> None:
        super().__init__()
        self.aggregator = aggregator
        self.register_buffer("coords", coords)

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        """Logits of ``bag`` (1, N, D) at the bound coordinates."""
        return self.aggregator(bag, self.coords[None])


def bound_aggregator(model: SlideModel, coords: np.ndarray | None) -> nn.Module:
    """The aggregator as a function of the bag alone (coordinates bound when it uses them)."""
    if not model.uses_coords:
        return model.aggregator
    if coords is None:
        raise ValueError("this slide model uses tile coordinates; pass them")
    bound = torch.as_tensor(coords, dtype=torch.float32, device=module_device(model.aggregator))
    return _WithCoords(model.aggregator, bound).eval()


def _module_name(model: SlideModel, name: str) -> str:
    return f"aggregator.{name}" if model.uses_coords else name


def _target_index(model: SlideModel, logits: np.ndarray, target: int | str | None) -> int:
    if target is None:
        return int(np.argmax(logits))
    if isinstance(target, str) and target in model.classes:
        return model.classes.index(target)
    if isinstance(target, int) or str(target).lstrip("-").isdigit():
        return int(target)
    raise ValueError(f"unknown class {target!r}; the slide model's classes: {model.classes}")


def _percentile(values: np.ndarray, signed: bool) -> np.ndarray:
    magnitude = np.abs(values) if signed else values
    ranks = np.argsort(np.argsort(magnitude, kind="stable"), kind="stable")
    share = (ranks + 1) / len(values)
    return (np.sign(values) * share if signed else share).astype(np.float32)


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


__all__ = ["SIGNED", "TileScores", "faithfulness", "score_tiles", "slide_logit"]
