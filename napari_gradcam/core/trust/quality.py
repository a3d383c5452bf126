"""Noise indicators of one map: where its energy lies, how spread and how speckled it is.

A map can look confident and mean nothing: on a tile of bare glass, or when it is spread
evenly or speckled like noise. These cheap measures say so in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from napari_gradcam.core.tiling.tile_stats import DIFFUSE_ENTROPY, map_entropy
from napari_gradcam.core.tiling.tissue import (
    MIN_TISSUE_FRACTION,
    cell_fractions,
    is_rgb,
    tissue_mask,
)

SPECKLED_AUTOCORRELATION = 0.2
"""Neighbour correlation below which a map is "speckled like noise"."""

OFF_TISSUE_SHARE = 0.5
"""Share of energy on tissue below which a map "lies mostly on glass"."""


@dataclass(frozen=True)
class NoiseIndicators:
    """Noise indicators of one map.

    Attributes
    ----------
    tissue_fraction : float or None
        Share of the input's pixels that are tissue (``None``: not an RGB image).
    energy_on_tissue : float or None
        Share of the map's energy (sum of ``|cam|``) on tissue pixels.
    entropy : float
        Shannon entropy of ``|cam|`` as a distribution over cells, divided by its maximum:
        0 = all on one cell, 1 = spread evenly (or empty).
    autocorrelation : float or None
        Pearson correlation of neighbouring cells: near 1 for smooth blobs, near 0 for noise.
    blank : bool
        The input holds (almost) no tissue: the map is not evidence for any class.
    flat : bool
        The map is zero everywhere: the method found nothing for this target.
    warnings : tuple of str
        What the flags mean, in plain words.
    """

    tissue_fraction: float | None
    energy_on_tissue: float | None
    entropy: float
    autocorrelation: float | None
    blank: bool
    flat: bool
    warnings: tuple[str, ...]


def energy_share(cam: np.ndarray, weights: np.ndarray) -> float | None:
    """Share of the energy ``sum |cam|`` that falls on ``weights`` (per-cell, in [0, 1])."""
    energy = np.abs(np.asarray(cam, dtype=np.float64))
    total = energy.sum()
    return float((energy * weights).sum() / total) if total > 0 else None


def neighbour_correlation(cam: np.ndarray) -> float | None:
    """Pearson correlation between each cell and its right and lower neighbours.

    ``None`` when the map is smaller than 2 x 2 or has no variation.
    """
    cam = np.asarray(cam, dtype=np.float64)
    if min(cam.shape) < 2:
        return None
    first = np.concatenate([cam[:, :-1].ravel(), cam[:-1, :].ravel()])
    second = np.concatenate([cam[:, 1:].ravel(), cam[1:, :].ravel()])
    if first.std() == 0 or second.std() == 0:
        return None
    return float(np.corrcoef(first, second)[0, 1])


def noise_indicators(
    cam: np.ndarray,
    image: np.ndarray,
    stride: Sequence[float],
    min_tissue: float = MIN_TISSUE_FRACTION,
) -> NoiseIndicators:
    """Measure one map against the pixels it explains.

    Parameters
    ----------
    cam : numpy.ndarray
        (h, w) map (raw or normalised; signed maps count by magnitude).
    image : numpy.ndarray
        The explained input (H, W) or (H, W, C); tissue is only measured on RGB(A).
    stride : sequence of float
        (fy, fx) input pixels per map cell.
    min_tissue : float
        Tissue share below which the input is a blank tile.
    """
    cam = np.asarray(cam, dtype=np.float32)
    mask = tissue_mask(image) if is_rgb(np.asarray(image)) else None
    fraction = None if mask is None else float(mask.mean())
    on_tissue = None if mask is None else energy_share(cam, cell_fractions(mask, cam.shape, stride))
    indicators = NoiseIndicators(
        tissue_fraction=fraction,
        energy_on_tissue=on_tissue,
        entropy=float(map_entropy(np.abs(cam)[None])[0]),
        autocorrelation=neighbour_correlation(cam),
        blank=fraction is not None and fraction < min_tissue,
        flat=not np.any(cam),
        warnings=(),
    )
    return _with_warnings(indicators, min_tissue)


def _with_warnings(ind: NoiseIndicators, min_tissue: float) -> NoiseIndicators:
    """Return ``ind`` with the plain-language meaning of its flags."""
    warnings = []
    if ind.blank:
        warnings.append(
            f"blank tile: only {ind.tissue_fraction:.1%} of the pixels are tissue (under "
            f"{min_tissue:.0%}); the map shows where the model looked on empty glass and is "
            "not evidence for any class"
        )
    if ind.flat:
        warnings.append("the map is zero everywhere: the method found no evidence for this class")
    if (
        not ind.blank
        and ind.energy_on_tissue is not None
        and ind.energy_on_tissue < OFF_TISSUE_SHARE
    ):
        warnings.append(
            f"only {ind.energy_on_tissue:.0%} of the map's energy lies on tissue: "
            "it highlights glass or background more than the tissue"
        )
    if not ind.flat and ind.entropy > DIFFUSE_ENTROPY:
        warnings.append("the map is spread almost evenly: it singles out no region")
    if ind.autocorrelation is not None and ind.autocorrelation < SPECKLED_AUTOCORRELATION:
        warnings.append("neighbouring cells barely agree: the map is speckled like noise")
    return replace(ind, warnings=tuple(warnings))
