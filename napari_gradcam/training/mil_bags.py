"""Bags of tiles from the CC0 slide for the demo slide model, with stain-derived tile labels.

A tile is "truly positive" when the demo's stain rule calls it nuclei-dense (``labels``); a bag
is positive when it holds at least ``POSITIVE_AT`` such tiles (one: with 4 of 16, the trained
attention found the nuclei-dense tiles with an AUC of only 0.80). Tiles whose left edge is at
``HELD_OUT_X`` or beyond are held out (the demo encoder never saw them either).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_gradcam.models.bundled import DEMO_DIR
from napari_gradcam.models.slide_model import SlideModel, load_slide_model
from napari_gradcam.training.stain_labels import (
    label_from_fractions,
    slide_evidence,
    tile_fractions,
)

DEMO_CARD = DEMO_DIR / "mil_demo.json"
HELD_OUT_X = 1480
BAG_SIZE = 16
MAX_POSITIVE = 4
POSITIVE_AT = 1
NUCLEI_DENSE = 2


@dataclass(frozen=True)
class DemoTiles:
    """The slide's embedded tiles with their labels.

    Attributes
    ----------
    embeddings : numpy.ndarray
        (N, D) tile embeddings.
    positive : numpy.ndarray
        (N,) bool: nuclei-dense by the stain rule.
    held_out : numpy.ndarray
        (N,) bool: right of ``HELD_OUT_X``.
    """

    embeddings: np.ndarray
    positive: np.ndarray
    held_out: np.ndarray


def demo_encoder_model(card: Path = DEMO_CARD) -> SlideModel:
    """The demo card's slide model without its aggregator weights (to train them)."""
    data = json.loads(card.read_text())
    data["aggregator"].pop("weights", None)
    for key in ("weights", "card"):
        data["encoder"][key] = str((card.parent / data["encoder"][key]).resolve())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "card.json"
        path.write_text(json.dumps(data))
        return load_slide_model(path, device="cpu")


def demo_tiles(model: SlideModel, cache_dir: str | Path | None = None) -> DemoTiles:
    """Embed the CC0 slide's tissue tiles (half-overlapping) and label them by their stain."""
    from napari_gradcam.data import HE_SLIDE_PATH, read_he_region
    from napari_gradcam.slides import open_slide
    from napari_gradcam.slides.embeddings import slide_embeddings

    slide = open_slide(HE_SLIDE_PATH)
    tiles = slide_embeddings(slide, model, overlap=0.5, cache_dir=cache_dir)
    evidence = slide_evidence(read_he_region())
    cutoff = json.loads((DEMO_DIR / "demo_net.json").read_text())["extra"]["nuclei_fraction_cutoff"]
    boxes = tiles.boxes.round().astype(int)
    fractions = np.array(
        [
            tile_fractions(evidence.tissue[y0:y1, x0:x1], evidence.nuclei[y0:y1, x0:x1])
            for y0, x0, y1, x1 in boxes
        ]
    )
    labels = label_from_fractions(fractions[:, 0], fractions[:, 1], cutoff)
    return DemoTiles(tiles.embeddings, labels == NUCLEI_DENSE, boxes[:, 1] >= HELD_OUT_X)


def make_bags(
    positive: np.ndarray, pool: np.ndarray, n_bags: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n_bags, BAG_SIZE) tile indices from ``pool`` and (n_bags,) bag labels.

    Each bag draws ``k`` nuclei-dense tiles and fills up with other tiles; it is positive when
    ``k >= POSITIVE_AT``, with ``k`` uniform in ``0..MAX_POSITIVE``.
    """
    rng = np.random.default_rng(seed)
    yes, no = pool[positive[pool]], pool[~positive[pool]]
    if len(yes) < MAX_POSITIVE or len(no) < BAG_SIZE:
        raise ValueError(f"too few tiles to build bags: {len(yes)} positive, {len(no)} other")
    counts = rng.integers(0, MAX_POSITIVE + 1, n_bags)
    bags = np.stack(
        [
            rng.permutation(
                np.concatenate(
                    [rng.choice(yes, k, replace=False), rng.choice(no, BAG_SIZE - k, replace=False)]
                )
            )
            for k in counts
        ]
    )
    return bags, (counts >= POSITIVE_AT).astype(np.int64)
