import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.explain.preprocess import to_batch
from napari_gradcam.core.trust.faithfulness import baseline_batch, deletion_insertion, pixel_ranks
from tests.core.he_tiles import demo_model, he_tile

STEPS = 8


def _batch(name: str) -> torch.Tensor:
    return to_batch(he_tile(name), demo_model().card, torch.device("cpu"))


def test_gradcam_order_deletes_evidence_faster_than_random_orders() -> None:
    demo = demo_model()
    for name in ("dense_edge", "dense_edge_2"):
        batch = _batch(name)
        exp = ng.explain(demo, batch, target="nuclei-dense")
        target = int(exp.targets[0])
        ours = deletion_insertion(demo, batch, exp.cam[0], target, steps=STEPS)
        noise = [np.random.default_rng(k).random((12, 12)) for k in range(3)]
        chance = [deletion_insertion(demo, batch, n, target, steps=STEPS) for n in noise]
        assert ours.deletion_auc < min(c.deletion_auc for c in chance) - 0.05
        assert ours.insertion_auc > max(c.insertion_auc for c in chance)


def test_curves_start_and_end_at_the_image_and_the_baseline() -> None:
    demo, batch = demo_model(), _batch("dense_edge")
    exp = ng.explain(demo, batch)
    curves = deletion_insertion(demo, batch, exp.cam[0], int(exp.targets[0]), steps=4, chunk=2)
    np.testing.assert_allclose(curves.fractions, [0, 0.25, 0.5, 0.75, 1])
    assert curves.deletion[0] == pytest.approx(exp.probabilities[0], abs=1e-5)
    assert curves.insertion[-1] == pytest.approx(exp.probabilities[0], abs=1e-5)
    assert curves.deletion[-1] == pytest.approx(curves.insertion[0], abs=1e-6)
    assert 0 <= curves.deletion_auc <= 1 and curves.baseline == "blur"
    unchunked = deletion_insertion(demo, batch, exp.cam[0], int(exp.targets[0]), steps=4)
    np.testing.assert_allclose(unchunked.deletion, curves.deletion, atol=1e-6)


def test_pixel_ranks_follow_the_map_and_break_ties_at_random() -> None:
    saliency = np.array([[0.0, 1.0], [0.0, 0.0]])
    ranks = pixel_ranks(saliency, (8, 8))
    assert sorted(ranks.ravel()) == list(range(64))
    assert ranks[:2, 6:].max() == 3  # the four pixels nearest the hot cell come first
    assert ranks[6:, :2].min() > 32
    flat = pixel_ranks(np.zeros((2, 2)), (8, 8))
    assert not np.array_equal(flat.ravel(), np.arange(64)), "ties must not fall in raster order"


def test_baselines_keep_colours_and_unknown_ones_are_refused() -> None:
    batch = _batch("dense_edge")
    tissue = np.zeros((96, 96), bool)
    tissue[:, :10] = True
    mean = baseline_batch(batch, "tissue-mean", tissue)
    torch.testing.assert_close(mean[0, :, 50, 50], batch[0, :, :, :10].mean(dim=(1, 2)))
    blurred = baseline_batch(batch)
    assert blurred.shape == batch.shape and blurred.std() < batch.std()
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_batch(batch, "white")
