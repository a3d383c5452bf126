"""Do the tile scores rank the tiles that matter? Remove the top tiles, compare with random ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.core.mil.attribution import slide_logit


@dataclass(frozen=True)
class RemovalCurve:
    """The slide logit's drop when tiles are removed from the bag.

    Attributes
    ----------
    removed : numpy.ndarray
        (K,) numbers of tiles removed.
    top_drop : numpy.ndarray
        (K,) drop of the target logit after removing the top tiles by score.
    random_drop, random_std : numpy.ndarray
        (K,) mean and standard deviation of the drop over random removals of as many tiles.
    """

    removed: np.ndarray
    top_drop: np.ndarray
    random_drop: np.ndarray
    random_std: np.ndarray

    @property
    def gain_over_random(self) -> np.ndarray:
        """(K,) how much more the top tiles matter than random ones (logit units)."""
        return self.top_drop - self.random_drop


def removal_faithfulness(
    aggregator: nn.Module,
    embeddings: torch.Tensor,
    target: int,
    scores: np.ndarray,
    *,
    removed: Sequence[int] | None = None,
    repeats: int = 16,
    seed: int = 0,
) -> RemovalCurve:
    """Logit drops after removing the ``k`` highest-scoring tiles, against random removals.

    Parameters
    ----------
    aggregator : torch.nn.Module
        The slide aggregator (bag (1, N, D) to logits).
    embeddings : torch.Tensor
        (N, D) tile embeddings of one bag.
    target : int
        The class whose logit is followed.
    scores : numpy.ndarray
        (N,) tile scores; higher means "pushes the class more".
    removed : sequence of int, optional
        How many tiles to remove; default 1, 2, 5, 10, 20 and 50 % of the bag (at least one
        tile always stays).
    repeats : int
        Random removals per ``k``.
    seed : int
        Seed of the random removals.
    """
    n_tiles = len(embeddings)
    if len(scores) != n_tiles:
        raise ValueError(f"{len(scores)} scores for {n_tiles} tiles")
    ks = _removal_sizes(n_tiles, removed)
    order = np.argsort(-np.asarray(scores), kind="stable")
    rng = np.random.default_rng(seed)
    with frozen_model(aggregator), torch.inference_mode():
        full = float(slide_logit(aggregator, embeddings, target))

        def drop(gone: np.ndarray) -> float:
            keep = np.setdiff1d(np.arange(n_tiles), gone)
            return full - float(slide_logit(aggregator, embeddings[keep], target))

        top = np.array([drop(order[:k]) for k in ks])
        random = np.array(
            [[drop(rng.choice(n_tiles, k, replace=False)) for _ in range(repeats)] for k in ks]
        )
    return RemovalCurve(ks, top, random.mean(axis=1), random.std(axis=1))


def _removal_sizes(n_tiles: int, removed: Sequence[int] | None) -> np.ndarray:
    if n_tiles < 2:
        raise ValueError("removing tiles needs a bag of at least two tiles")
    if removed is None:
        removed = [max(1, round(n_tiles * f)) for f in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)]
    sizes = np.unique(np.clip(np.asarray(removed, dtype=np.int64), 1, n_tiles - 1))
    return sizes
