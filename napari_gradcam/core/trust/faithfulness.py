"""Is the map faithful to the model? Deletion and insertion curves and their areas.

Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018: replace the pixels the map ranks highest first and watch the target's probability.
A faithful map makes it fall fast when they are deleted (low deletion AUC) and rise fast when
only they are inserted into the baseline (high insertion AUC). Removed pixels take a baseline
that keeps the image's colours (a blurred copy, or the mean colour of the tissue), not white
glass, which an H&E model reads as a class of its own.

The curves follow the target's probability, as in the paper. When that probability is
saturated (near 1 for the whole curve, so it cannot show which pixels matter), they can follow
the target's score instead (``measure="logit"``): the same deletion and insertion order, the
same comparison with a random order, read before the softmax flattens it. A target without a
probability (a prompt's or a region's similarity) is followed by its score (``"score"``).

Every kind of target is measured through its bound form (``core.explain.targets``): what it
asks of the intact image (the top class, a contrast's nearest class) is fixed there and kept
for every perturbed copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from skimage.filters import gaussian
from skimage.transform import resize
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.batching import run_model
from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.core.explain.inputs import model_parts
from napari_gradcam.core.explain.targets import BoundTarget, bind_target
from napari_gradcam.core.targets import Target

Baseline = Literal["blur", "tissue-mean"]
Measure = Literal["probability", "logit", "score"]
MEASURES = ("probability", "logit", "score")
BLUR_SIGMA = 5.0
"""Gaussian sigma (pixels) of the blurred baseline, as in RISE's insertion metric."""
PIXEL_BUDGET = 1 << 22
"""Input pixels per forward pass of perturbed images (bounds memory on large crops)."""


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Target probability (or score) as the most salient pixels are deleted or inserted.

    Attributes
    ----------
    fractions : numpy.ndarray
        (S,) share of pixels replaced, from 0 to 1.
    deletion : numpy.ndarray
        (S,) measure with the top ``fraction`` of pixels replaced by the baseline.
    insertion : numpy.ndarray
        (S,) measure of the baseline with only the top ``fraction`` of pixels restored.
    deletion_auc, insertion_auc : float
        Areas under the curves (trapezoid rule over [0, 1]).
    baseline : str
        ``"blur"`` or ``"tissue-mean"``.
    measure : str
        ``"probability"`` (softmax, as in the paper), ``"logit"`` (the target's raw score
        where its probability is saturated) or ``"score"`` (a target without a probability:
        a similarity).
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    baseline: str
    measure: str = "probability"


def pixel_ranks(saliency: np.ndarray, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Rank of every input pixel, 0 = most salient; ties are broken at random (seeded).

    The map is resized to the input (bilinear between cell centres, as napari draws it) so
    that pixels within a cell are ordered by the neighbouring cells too. Random tie-breaking
    keeps flat regions from being removed in raster order, which would bias the curves.

    Returns
    -------
    numpy.ndarray
        int64 (H, W), a permutation of ``0 .. H * W - 1``.
    """
    values = resize(np.asarray(saliency, dtype=np.float64), shape, order=1, mode="edge").ravel()
    jitter = np.random.default_rng(seed).random(values.size)
    order = np.lexsort((jitter, -values))
    ranks = np.empty(values.size, dtype=np.int64)
    ranks[order] = np.arange(values.size)
    return ranks.reshape(shape)


def baseline_batch(
    batch: torch.Tensor,
    baseline: Baseline = "blur",
    tissue: np.ndarray | None = None,
    sigma: float = BLUR_SIGMA,
) -> torch.Tensor:
    """Return what deleted pixels become, in the preprocessed space of ``batch`` (1, C, H, W).

    ``"blur"`` smooths each channel with a Gaussian of ``sigma`` pixels; ``"tissue-mean"``
    fills every pixel with the mean of the ``tissue`` pixels (of all pixels without tissue).
    """
    image = batch[0].detach().cpu().double().numpy()
    if baseline == "blur":
        filled = gaussian(image, sigma=sigma, channel_axis=0, preserve_range=True)
    elif baseline == "tissue-mean":
        where = tissue if tissue is not None and tissue.any() else np.ones(image.shape[1:], bool)
        filled = np.broadcast_to(image[:, where].mean(axis=1)[:, None, None], image.shape)
    else:
        raise ValueError(f"unknown baseline {baseline!r}; use 'blur' or 'tissue-mean'")
    return torch.as_tensor(np.ascontiguousarray(filled)[None]).to(batch)


def deletion_insertion(
    model: object,
    batch: torch.Tensor,
    saliency: np.ndarray,
    target: Target = None,
    *,
    card: ModelCard | None = None,
    baseline: Baseline = "blur",
    tissue: np.ndarray | None = None,
    steps: int = 16,
    chunk: int | None = None,
    seed: int = 0,
    measure: Measure | None = None,
) -> FaithfulnessCurves:
    """Deletion and insertion curves of one map, most salient pixels first.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The model (a ``LoadedModel`` brings its card and, for a prompt, its text tower).
    batch : torch.Tensor
        The preprocessed input (1, C, H, W).
    saliency : numpy.ndarray
        (h, w) map of any resolution; higher = more important.
    target : Target
        What is followed: a class (index or name; ``None``: the top class), several classes,
        a contrast, a prompt, an embedding or an output region; it is resolved on the intact
        image and kept for every perturbed copy.
    card : ModelCard, optional
        Overrides the card of a ``LoadedModel``.
    baseline : {"blur", "tissue-mean"}
        What deleted pixels become.
    tissue : numpy.ndarray, optional
        (H, W) tissue mask for the ``"tissue-mean"`` baseline.
    steps : int
        Number of equal steps from 0 to all pixels (the curves have ``steps + 1`` points).
    chunk : int, optional
        Curve points per forward pass (each point is one deleted and one inserted image);
        default: as many as :data:`PIXEL_BUDGET` allows.
    seed : int
        Seed of the tie-breaking among equal map values.
    measure : {"probability", "logit", "score"}, optional
        What the curves follow: the probability (the paper's), the raw score (for a target
        whose probability is saturated); default: the probability, or the score of a target
        without one (a similarity).
    """
    if measure is not None and measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; use one of {', '.join(MEASURES)}")
    module, card = model_parts(model, card)
    follow = _FollowedTarget(module, bind_target(target, card, getattr(model, "text", None)))
    fixed = follow.fix(batch)
    measure = measure or ("probability" if follow.has_probability(fixed) else "score")
    if measure == "probability" and not follow.has_probability(fixed):
        raise ValueError("this target has no probability (a similarity): use measure='score'")
    height, width = batch.shape[-2:]
    ranks = torch.as_tensor(pixel_ranks(saliency, (height, width), seed)).to(batch.device)
    fill = baseline_batch(batch, baseline, tissue)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = torch.as_tensor(np.round(fractions * height * width), device=batch.device)
    chunk = max(1, chunk or PIXEL_BUDGET // (2 * height * width))
    deletion, insertion = [], []
    for start in range(0, len(counts), chunk):
        removed = ranks[None, None] < counts[start : start + chunk, None, None, None]
        both = torch.cat([torch.where(removed, fill, batch), torch.where(removed, batch, fill)])
        values = follow.values(both, fixed, measure)
        deletion.append(values[: len(removed)])
        insertion.append(values[len(removed) :])
    deletion_curve, insertion_curve = np.concatenate(deletion), np.concatenate(insertion)
    return FaithfulnessCurves(
        fractions,
        deletion_curve,
        insertion_curve,
        float(np.trapezoid(deletion_curve, fractions)),
        float(np.trapezoid(insertion_curve, fractions)),
        baseline,
        measure,
    )


class _FollowedTarget:
    """A bound target measured on perturbed copies of one image, as it was on the image."""

    def __init__(self, module: nn.Module, bound: BoundTarget) -> None:
        self.module = module
        self.bound = bound

    def _head(self, images: torch.Tensor) -> torch.Tensor:
        with frozen_model(self.module), torch.inference_mode():
            return run_model(self.module, images, self.bound.head)

    def fix(self, batch: torch.Tensor) -> torch.Tensor:
        """The target's weights on the intact image (its top or nearest class is chosen here)."""
        self.intact = self._head(batch[:1])
        return self.bound.weights(self.intact)

    def has_probability(self, weights: torch.Tensor) -> bool:
        """Whether the target has a probability on the intact image (a similarity has none)."""
        return bool(torch.isfinite(self.bound.probabilities(self.intact, weights)).all())

    def values(self, images: torch.Tensor, weights: torch.Tensor, measure: Measure) -> np.ndarray:
        """Probability (or score) of the fixed target for each image, under inference mode."""
        outputs = self._head(images)
        repeated = weights.expand(len(images), *weights.shape[1:])
        if measure == "probability":
            values = self.bound.probabilities(outputs, repeated)
        else:
            values = self.bound.scores(outputs, repeated)
        return values.float().cpu().numpy()
