"""The result of an explanation and its display normalisation (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Explanation:
    """A raw class-activation map and where it lies on the image's pixel grid.

    Attributes
    ----------
    cam : numpy.ndarray
        float32, non-negative, at the target layer's resolution, not normalised:
        shape (h, w) for one image, (N, h, w) for a batch.
    method : str
        Name of the method that made the map (a key of ``METHODS``).
    layer : str
        Name of the module whose output was explained.
    targets : numpy.ndarray
        int64 (N,): the explained class per image.
    target_names : tuple of str
        Class names for ``targets`` (from the model card, else the numbers).
    scores : numpy.ndarray
        float32 (N,): the explained score (the target's logit; the negated logit for the
        negative class of a single-logit model).
    probabilities : numpy.ndarray
        float32 (N,): softmax (or sigmoid) probability of the target class.
    stride : tuple of float
        (fy, fx): input pixels per map cell.
    origin : tuple of float
        (y, x): the image pixel of the explained crop's top-left corner.
    input_shape : tuple of int
        (H, W) of the explained input.
    timings : dict
        Seconds per step: ``preprocess``, ``capture`` (forward, and backward when the
        method needs gradients), ``method``, ``total``.
    tta : bool
        Whether the map is the mean over flipped copies (test-time augmentation).
    logits : numpy.ndarray, optional
        float32 (N, K): the model's logits for the images (not their flipped copies).
    bfloat16 : bool
        Whether the masked forwards ran in bfloat16 (the map is close to the float32 one).
    """

    cam: np.ndarray
    method: str
    layer: str
    targets: np.ndarray
    target_names: tuple[str, ...]
    scores: np.ndarray
    probabilities: np.ndarray
    stride: tuple[float, float]
    origin: tuple[float, float]
    input_shape: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)
    tta: bool = False
    logits: np.ndarray | None = None
    bfloat16: bool = False

    def summary(self) -> dict[str, object]:
        """Return the JSON-serialisable facts of this explanation (no map)."""
        return {
            "method": self.method,
            "layer": self.layer,
            "targets": self.targets.tolist(),
            "target_names": list(self.target_names),
            "scores": self.scores.tolist(),
            "probabilities": self.probabilities.tolist(),
            "stride": list(self.stride),
            "origin": list(self.origin),
            "input_shape": list(self.input_shape),
            "map_shape": list(self.cam.shape[-2:]),
            "timings": dict(self.timings),
            "tta": self.tta,
            "bfloat16": self.bfloat16,
        }


def normalize_cam(
    cam: np.ndarray, mode: Literal["minmax", "max", "percentile"] = "minmax", *, q: float = 99.0
) -> np.ndarray:
    """Scale a raw map to [0, 1] for display.

    Parameters
    ----------
    cam : numpy.ndarray
        A raw map (h, w) or a batch (N, h, w); batches are normalised per map.
    mode : {"minmax", "max", "percentile"}
        ``minmax`` maps [min, max] to [0, 1]; ``max`` divides by the maximum (keeps 0 at 0);
        ``percentile`` divides by the ``q``-th percentile and clips (robust to hot pixels).
    q : float
        Percentile for ``mode="percentile"``.

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1]; a flat map becomes all zeros.

    Examples
    --------
    >>> normalize_cam(np.array([[0.0, 2.0], [1.0, 4.0]]), "max").tolist()
    [[0.0, 0.5], [0.25, 1.0]]
    """
    if mode not in ("minmax", "max", "percentile"):
        raise ValueError(f"unknown normalisation {mode!r}; use 'minmax', 'max' or 'percentile'")
    maps = np.asarray(cam, dtype=np.float32)
    axes = (-2, -1)
    if mode == "percentile":
        high = np.percentile(maps, q, axis=axes, keepdims=True).astype(np.float32)
    else:
        high = maps.max(axis=axes, keepdims=True)
    low = maps.min(axis=axes, keepdims=True) if mode == "minmax" else np.zeros_like(high)
    span = high - low
    safe_span = np.where(span > 0, span, 1.0)
    return np.clip(np.where(span > 0, (maps - low) / safe_span, 0.0), 0.0, 1.0).astype(np.float32)
