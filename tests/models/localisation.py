"""Helpers of the demo models' tests: held-out tiles, the energy ratio and a ranking AUC."""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from napari_gradcam.core.card import ModelCard
from napari_gradcam.training.stain_labels import SlideEvidence


def held_out_tissue(card: ModelCard, evidence: SlideEvidence) -> tuple[np.ndarray, np.ndarray]:
    """Indices and labels of the held-out tiles (by the card's split) that contain tissue."""
    extra = card.extra
    assert (extra["tile_size"], extra["stride"]) == (evidence.tile_size, 48)
    labels = evidence.labels(extra["nuclei_fraction_cutoff"], extra["min_tissue_fraction"])
    index = np.flatnonzero((evidence.origins[:, 1] >= extra["held_out_x"]) & (labels > 0))
    return index, labels[index]


def he_tile(evidence: SlideEvidence, index: int) -> np.ndarray:
    """The RGB pixels of tile ``index`` of the bundled H&E slide."""
    from napari_gradcam.data import read_he_region

    r, c = evidence.origins[index]
    size = evidence.tile_size
    return np.ascontiguousarray(read_he_region()[r : r + size, c : c + size])


def energy_ratio(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's energy inside ``mask`` divided by the mask's area share."""
    upsampled = resize(cam, mask.shape, order=1)
    return float(upsampled[mask].sum() / upsampled.sum() / mask.mean())


def ranking_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``truth`` (Mann-Whitney, ties count half)."""
    yes, no = scores[truth], scores[~truth]
    wins = (yes[:, None] > no[None, :]).sum() + 0.5 * (yes[:, None] == no[None, :]).sum()
    return float(wins / (len(yes) * len(no)))
