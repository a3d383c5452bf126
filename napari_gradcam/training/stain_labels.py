"""Stain-derived tile labels and evidence masks for the demo model.

The demo task is computed from the image itself, so its "ground truth" evidence can be
checked pixel by pixel: tissue is where the colour is saturated (glass is grey-white),
nuclei are where hematoxylin dominates (colour deconvolution, ``skimage.color.rgb2hed``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage import color, filters

from napari_gradcam.core.tiling.tissue import remove_specks, tissue_mask

CLASSES: tuple[str, str, str] = ("background", "stroma", "nuclei-dense")
"""Class names in logit order."""

MIN_TISSUE_FRACTION = 0.25
"""Tiles with less tissue than this are "background"."""

TISSUE_SPECK_PX = 64
"""Tissue specks smaller than this are dropped; the tissue threshold is the slide's Otsu's."""


def hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Return the hematoxylin optical density of an RGB image (``rgb2hed`` channel 0)."""
    return color.rgb2hed(rgb)[..., 0]


def nuclei_mask(
    rgb: np.ndarray,
    tissue: np.ndarray | None = None,
    threshold: float | None = None,
    min_size: int = 20,
) -> np.ndarray:
    """Return where nuclei (strong hematoxylin) are, inside tissue.

    Parameters
    ----------
    rgb : numpy.ndarray
        (H, W, 3) uint8 RGB image.
    tissue : numpy.ndarray, optional
        (H, W) boolean tissue mask; default ``tissue_mask(rgb, None, min_size=TISSUE_SPECK_PX)``.
    threshold : float, optional
        Hematoxylin density above which a pixel is nuclear. Default: Otsu's threshold
        of the tissue pixels' density, clipped at its 99.5th percentile so that dark
        debris and ink do not drag the threshold up.
    min_size : int
        Nuclear specks smaller than this many pixels are removed.

    Returns
    -------
    numpy.ndarray
        (H, W) boolean mask, a subset of ``tissue``.
    """
    if tissue is None:
        tissue = tissue_mask(rgb, None, min_size=TISSUE_SPECK_PX)
    density = hematoxylin(rgb)
    if threshold is None:
        threshold = hematoxylin_threshold(density[tissue])
    return remove_specks((density > threshold) & tissue, min_size)


def hematoxylin_threshold(values: np.ndarray) -> float:
    """Return Otsu's threshold of hematoxylin densities clipped at their 99.5th percentile."""
    top = float(np.percentile(values, 99.5))
    return float(filters.threshold_otsu(np.clip(values, 0.0, top)))


def label_from_fractions(
    tissue_fraction: np.ndarray | float,
    nuclei_fraction: np.ndarray | float,
    nuclei_cutoff: float,
    min_tissue: float = MIN_TISSUE_FRACTION,
) -> np.ndarray:
    """Return class indices (:data:`CLASSES`) from per-tile fractions (:func:`tile_fractions`).

    A tile is "background" below ``min_tissue`` tissue, else "nuclei-dense" above
    ``nuclei_cutoff`` nuclear pixels per tissue pixel, else "stroma".
    """
    labels = np.where(np.asarray(nuclei_fraction) > nuclei_cutoff, 2, 1)
    return np.where(np.asarray(tissue_fraction) < min_tissue, 0, labels)


def tile_fractions(tissue: np.ndarray, nuclei: np.ndarray) -> tuple[float, float]:
    """Return (tissue pixels per tile pixel, nuclear pixels per tissue pixel)."""
    n_tissue = int(np.count_nonzero(tissue))
    nuclei_fraction = np.count_nonzero(nuclei) / n_tissue if n_tissue else 0.0
    return n_tissue / tissue.size, float(nuclei_fraction)


@dataclass(frozen=True)
class SlideEvidence:
    """Whole-slide evidence masks and the tile grid they are summarised on.

    Attributes
    ----------
    tissue, nuclei : numpy.ndarray
        (H, W) boolean masks of the slide.
    origins : numpy.ndarray
        (N, 2) int (row, column) top-left corners of the tiles.
    tissue_fraction, nuclei_fraction : numpy.ndarray
        (N,) per-tile fractions, as returned by :func:`tile_fractions`.
    """

    tissue: np.ndarray
    nuclei: np.ndarray
    origins: np.ndarray
    tissue_fraction: np.ndarray
    nuclei_fraction: np.ndarray
    tile_size: int

    def labels(self, nuclei_cutoff: float, min_tissue: float = MIN_TISSUE_FRACTION) -> np.ndarray:
        """Return (N,) class indices for all tiles; see :func:`label_from_fractions`."""
        return label_from_fractions(
            self.tissue_fraction, self.nuclei_fraction, nuclei_cutoff, min_tissue
        )

    def masks(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the (tissue, nuclei) masks of tile ``index``."""
        r, c = self.origins[index]
        window = np.s_[r : r + self.tile_size, c : c + self.tile_size]
        return self.tissue[window], self.nuclei[window]


def slide_evidence(rgb: np.ndarray, tile_size: int = 96, stride: int = 48) -> SlideEvidence:
    """Compute evidence masks for a whole slide and summarise them on a tile grid.

    Thresholds (saturation and hematoxylin) are chosen once on the whole slide, so that
    every tile is judged by the same rule.

    Parameters
    ----------
    rgb : numpy.ndarray
        (H, W, 3) uint8 RGB slide.

    Returns
    -------
    SlideEvidence
        Masks, tile origins and per-tile fractions.
    """
    tissue = tissue_mask(rgb, None, min_size=TISSUE_SPECK_PX)
    nuclei = nuclei_mask(rgb, tissue)
    rows = np.arange(0, rgb.shape[0] - tile_size + 1, stride)
    cols = np.arange(0, rgb.shape[1] - tile_size + 1, stride)
    origins = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    fractions = np.array(
        [
            tile_fractions(
                tissue[r : r + tile_size, c : c + tile_size],
                nuclei[r : r + tile_size, c : c + tile_size],
            )
            for r, c in origins
        ]
    )
    return SlideEvidence(tissue, nuclei, origins, fractions[:, 0], fractions[:, 1], tile_size)
