"""Per-tile numbers: their names, and how focused (or spread and speckled) tile maps are.

Each function takes raw maps (N, h, w) and returns one number per map (numpy only). A flat
or empty map counts as the least focused.

Examples
--------
>>> focused = np.zeros((1, 4, 4)); focused[0, 1, 1] = 1.0
>>> flat = np.ones((1, 4, 4))
>>> float(map_entropy(focused)[0]), float(map_entropy(flat)[0])
(0.0, 1.0)
>>> float(energy_concentration(focused)[0]), float(energy_concentration(flat)[0])
(1.0, 0.125)
"""

from __future__ import annotations

import numpy as np

FACTS = (
    "class_index",
    "probability",
    "margin",
    "target_index",
    "target_probability",
    "score",
    "entropy",
    "energy",
    "roughness",
    "flat",
    "diffuse",
)
"""Per-tile numbers of a tiled explanation: the predicted class, its probability and its lead
over the runner-up, the explained class, its probability and score, the map's noise
indicators (:func:`map_entropy`, :func:`energy_concentration`, :func:`roughness`) and its noise
flags (:func:`noise_flags`: 1 when the map is flat, or spread almost evenly)."""

DIFFUSE_ENTROPY = 0.97
"""Normalised entropy above which a map is "spread almost evenly"."""

TOP_SHARE = 0.1
"""Share of a map's cells whose energy :func:`energy_concentration` measures."""


def _as_distribution(cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (maps flattened to (N, n) and scaled to sum 1, which maps have any mass)."""
    flat = np.clip(np.asarray(cams, dtype=np.float64).reshape(len(cams), -1), 0.0, None)
    total = flat.sum(axis=1, keepdims=True)
    has_mass = total[:, 0] > 0
    return np.divide(flat, total, where=total > 0, out=np.zeros_like(flat)), has_mass


def map_entropy(cams: np.ndarray) -> np.ndarray:
    """Shannon entropy of each map as a distribution, over its maximum ``log(h w)``.

    0: all evidence in one cell; 1: spread evenly (an empty map also gives 1).
    """
    p, has_mass = _as_distribution(cams)
    logs = np.log(p, where=p > 0, out=np.zeros_like(p))
    entropy = 0.0 - (p * logs).sum(axis=1) / np.log(max(p.shape[1], 2))
    return np.where(has_mass, entropy, 1.0).astype(np.float32)


def energy_concentration(cams: np.ndarray, top: float = TOP_SHARE) -> np.ndarray:
    """Share of each map's total in its hottest ``top`` fraction of cells.

    1: the evidence sits in a few cells; ``top``: a flat map (an empty map also gives ``top``).
    """
    p, has_mass = _as_distribution(cams)
    count = max(1, round(top * p.shape[1]))
    hottest = -np.partition(-p, count - 1, axis=1)[:, :count]
    return np.where(has_mass, hottest.sum(axis=1), count / p.shape[1]).astype(np.float32)


def roughness(cams: np.ndarray) -> np.ndarray:
    """Mean absolute difference between neighbouring cells, over the map's mean.

    0 for a smooth or flat map; large for a speckled one (an empty map gives 0).
    """
    maps = np.asarray(cams, dtype=np.float64)
    steps = np.abs(np.diff(maps, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(maps, axis=2)).mean(
        axis=(1, 2)
    )
    mean = maps.mean(axis=(1, 2))
    return np.divide(steps, mean, where=mean > 0, out=np.zeros_like(mean)).astype(np.float32)


def noise_flags(cams: np.ndarray, entropy: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Noise flags of each map as 0/1 arrays (N,): ``flat`` and ``diffuse``.

    ``flat``: zero everywhere (nothing found for the class); ``diffuse``: not flat, and its
    entropy above :data:`DIFFUSE_ENTROPY` (spread almost evenly).

    Examples
    --------
    >>> maps = np.stack([np.zeros((4, 4)), np.ones((4, 4)), np.eye(4)])
    >>> {name: flags.tolist() for name, flags in noise_flags(maps).items()}
    {'flat': [1, 0, 0], 'diffuse': [0, 1, 0]}
    """
    maps = np.asarray(cams)
    entropy = map_entropy(maps) if entropy is None else entropy
    flat = ~np.any(maps.reshape(len(maps), -1) != 0, axis=1)
    diffuse = ~flat & (entropy > DIFFUSE_ENTROPY)
    return {"flat": flat.astype(np.uint8), "diffuse": diffuse.astype(np.uint8)}
