"""Is the map faithful to the model? Deletion and insertion curves and their areas.

Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018: replace the pixels the map ranks highest first and watch the target's probability.
A faithful map makes it fall fast when they are deleted (low deletion AUC) and rise fast when
only they are inserted into the baseline (high insertion AUC). Removed pixels take a baseline
that keeps the image's colours (a blurred copy, or the mean colour of the tissue), not white
glass, which an H&E model reads as a class of its own.

The curves follow the class's softmax probability, as in the paper. When that probability is
saturated (near 1 for the whole curve, so it cannot show which pixels matter), they can follow
the class's logit instead (``measure="logit"``): the same deletion and insertion order, the
same comparison with a random order, read before the softmax flattens it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from skimage.filters import gaussian
from skimage.transform import resize
from torch import nn

from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.core.explain.targets import as_logits, class_probabilities

Baseline = Literal["blur", "tissue-mean"]
Measure = Literal["probability", "logit"]
BLUR_SIGMA = 5.0
"""Gaussian sigma (pixels) of the blurred baseline, as in RISE's insertion metric."""
PIXEL_BUDGET = 1 << 22
"""Input pixels per forward pass of perturbed images (bounds memory on large crops)."""


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Target probability (or logit) as the most salient pixels are deleted or inserted.

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
        ``"probability"`` (softmax, as in the paper) or ``"logit"`` (the class's raw score).
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
    target: int,
    *,
    baseline: Baseline = "blur",
    tissue: np.ndarray | None = None,
    steps: int = 16,
    chunk: int | None = None,
    seed: int = 0,
    measure: Measure = "probability",
) -> FaithfulnessCurves:
    """Deletion and insertion curves of one map, most salient pixels first.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier.
    batch : torch.Tensor
        The preprocessed input (1, C, H, W).
    saliency : numpy.ndarray
        (h, w) map of any resolution; higher = more important.
    target : int
        Class whose probability (or logit) is followed.
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
    measure : {"probability", "logit"}
        What the curves follow: the softmax probability (the paper's) or the raw logit (for
        a class whose probability is saturated).
    """
    if measure not in ("probability", "logit"):
        raise ValueError(f"unknown measure {measure!r}; use 'probability' or 'logit'")
    module = getattr(model, "module", model)
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
        values = _target_values(module, both, target, measure)
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


def _target_values(
    module: nn.Module, images: torch.Tensor, target: int, measure: Measure
) -> np.ndarray:
    """Probability (or logit) of ``target`` for each image, under inference mode."""
    with frozen_model(module), torch.inference_mode():
        logits = as_logits(module(images))
    if logits.shape[1] == 1:  # single logit: class 0 is its negation
        scores = logits[:, 0] * (1 if target == 1 else -1)
    else:
        scores = logits[:, target]
    probabilities = class_probabilities(logits)[:, target]
    return (scores if measure == "logit" else probabilities).float().cpu().numpy()
