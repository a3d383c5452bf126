"""The demo vision-language model's prompt map over the CC0 slide finds the nuclei-dense tissue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr

import napari_gradcam as ng
from napari_gradcam.data import HE_SLIDE_PATH
from napari_gradcam.slides.embeddings import tile_pixels

pytestmark = pytest.mark.slow  # embeds the CC0 slide's 308 tissue tiles (about 15 s)


def test_the_prompt_map_ranks_tiles_as_the_demo_classifier_does(tmp_path: Path) -> None:
    slide = ng.open_slide(HE_SLIDE_PATH)
    vlm, classifier = ng.load_model("demo-vlm"), ng.load_model("demo")
    job = ng.SimilarityJob(ng.Prompt(("nuclei-dense tissue",)), cache_dir=str(tmp_path))
    result = ng.run_to_end(ng.similarity_slide_map(slide, vlm, job))
    tiles = np.stack([tile_pixels(slide, result.tiles, i) for i in range(len(result.scores))])
    batch = ng.preprocess_tiles(tiles, classifier.card, (0.0, 255.0), torch.device("cpu"))
    with torch.inference_mode():
        probabilities = torch.softmax(classifier.module(batch), dim=1).numpy()
    dense = probabilities[:, classifier.card.classes.index("nuclei-dense")]
    assert spearmanr(result.scores, dense).statistic >= 0.8
    called = probabilities.argmax(axis=1) == classifier.card.classes.index("nuclei-dense")
    ranks = rankdata(result.scores)
    auc = (ranks[called].sum() - called.sum() * (called.sum() + 1) / 2) / (
        called.sum() * (~called).sum()
    )
    assert auc >= 0.9, f"AUC {auc:.3f} of the tiles the classifier calls nuclei-dense"
