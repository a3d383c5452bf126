"""Layer discovery on models whose output is a map (segmentation) or an embedding."""

from __future__ import annotations

import pytest
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.model_layers import default_layer, model_layers
from napari_gradcam.core.loaded_model import LoadedModel
from tests.segmenters import TinySegmenter, WithAuxiliaryLabels
from tests.transformers import TinyViT

SHAPE = (1, 3, 32, 32)


def test_a_dense_model_gets_no_guessed_default_layer() -> None:
    # its last map is the segmentation head's output: the logits themselves
    with pytest.raises(ValueError, match=r"returns a map \(1, 3, 32, 32\)") as refused:
        default_layer(TinySegmenter(), SHAPE)
    suggestions = str(refused.value).partition("feature maps before the head: ")[2].split(", ")
    assert suggestions[-1] == "decoder" and "decoder.1" in suggestions
    assert not any(name.startswith("segmentation_head") for name in suggestions)


def test_a_dense_model_with_image_labels_is_read_by_its_masks() -> None:
    with pytest.raises(ValueError, match=r"returns a map \(1, 3, 32, 32\)"):
        default_layer(WithAuxiliaryLabels(TinySegmenter()), SHAPE)


def test_the_card_names_a_dense_model_s_layer() -> None:
    card = ModelCard(default_layer="decoder")
    assert default_layer(LoadedModel(TinySegmenter(), card, "test", "factory"), SHAPE) == "decoder"


def test_every_layer_of_a_dense_model_reaches_its_output() -> None:
    model = TinySegmenter()
    layers = model_layers(model)
    assert layers.reaching(SHAPE) == list(layers.candidates(SHAPE))
    assert {"encoder", "decoder", "segmentation_head"} <= set(layers.reaching(SHAPE))


def test_an_encoder_s_default_layer_is_its_classifier_s() -> None:
    classifier = TinyViT(global_pool="avg").eval()
    encoder = TinyViT(global_pool="avg").eval()
    encoder.load_state_dict(classifier.state_dict())
    encoder.head = nn.Identity()  # returns the (N, D) embedding
    assert default_layer(encoder, SHAPE) == default_layer(classifier, SHAPE) == "norm"
