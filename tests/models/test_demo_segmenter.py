"""The demo segmenter: per-pixel logits at input resolution, and its training labels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_gradcam.models.demo_segmenter import CLASSES, DEFAULT_LAYER, build_demo_segmenter
from napari_gradcam.training.train_seg_demo import intersection_over_union, pixel_labels


@pytest.mark.parametrize("size", [(96, 96), (64, 132)])
def test_logits_come_at_input_resolution(size: tuple[int, int]) -> None:
    model = build_demo_segmenter().eval()
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, *size))
    assert logits.shape == (2, len(CLASSES), *size)


def test_sides_that_are_not_multiples_of_four_are_refused() -> None:
    with pytest.raises(ValueError, match=r"97 x 96 px.*multiples of 4"):
        build_demo_segmenter()(torch.zeros(1, 3, 97, 96))


def test_default_layer_is_the_last_decoder_block_before_the_head() -> None:
    model = build_demo_segmenter()
    layer = dict(model.named_modules())[DEFAULT_LAYER]
    assert isinstance(layer, torch.nn.ReLU)
    assert model.up1[-1] is layer and model.head.in_channels == model.up1[-2].num_features


def test_pixel_labels_nest_nuclei_in_tissue() -> None:
    rgb = np.full((64, 64, 3), 240, dtype=np.uint8)  # glass
    rgb[8:56, 8:56] = (230, 150, 200)  # eosin-pink tissue
    rgb[24:40, 24:40] = (80, 40, 140)  # a dark purple nucleus
    labels = pixel_labels(rgb)
    assert labels[0, 0] == 0 and labels[12, 12] == 1 and labels[32, 32] == 2
    assert set(np.unique(labels)) == {0, 1, 2}


def test_intersection_over_union_per_class() -> None:
    truth = np.array([[0, 0, 1, 2]])
    predicted = np.array([[0, 1, 1, 2]])
    iou = intersection_over_union(predicted, truth)
    assert iou == {"background": 0.5, "tissue": 0.5, "nuclei": 1.0, "mean": 0.6667}


def test_bundled_card_names_the_dense_output_channels() -> None:
    import napari_gradcam as ng

    loaded = ng.load_model("demo-segmenter", device="cpu")
    assert loaded.card.output == "dense" and loaded.card.classes == CLASSES
    assert loaded.card.default_layer == DEFAULT_LAYER and loaded.text is None
    with pytest.raises(ValueError, match=r"names 2 classes .* returns 3 logit maps"):
        ng.load_model("demo-segmenter", card=replace(loaded.card, classes=("a", "b")))
    with pytest.raises(ValueError, match=r"returns \(1, 3, 96, 96\), not \(N, classes\) logits"):
        ng.load_model("demo-segmenter", card=replace(loaded.card, output="classes"))
