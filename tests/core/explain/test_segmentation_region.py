"""Grad-CAM of a region of a segmentation output, against a direct slow reference.

The reference is Grad-CAM written out by hand: autograd of ``sum(mask * logits[class])`` with
respect to the layer's output, channel weights = the gradient's spatial mean, ReLU of the
weighted sum (``tests.core.reference.reference_gradcam``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core.card import ModelCard
from tests.architectures import ResNetLike
from tests.core.reference import reference_gradcam
from tests.segmenters import TinySegmenter

SIZE = 32
CLASSES = ("background", "nuclei", "stroma")
DENSE = ModelCard(classes=CLASSES, output="dense", default_layer="decoder")


def images(count: int = 1) -> torch.Tensor:
    return torch.randn((count, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(3))


def region(top: int = 5, bottom: int = 21, left: int = 3, right: int = 26) -> np.ndarray:
    """A mask in input pixels whose edges cut through cells of a half-resolution output."""
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def reference_region_gradcam(
    model: nn.Module, image: torch.Tensor, layer: str, weights: np.ndarray, sign: float = 1.0
) -> tuple[np.ndarray, float]:
    """Grad-CAM and score of ``sign * sum(weights * logits)``, ``weights`` (C, h, w), in float64."""
    model = copy.deepcopy(model).double()
    store: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        output.retain_grad()
        store["a"] = output
        return output.clone()

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        logits = model(image[None].double())[0]
    finally:
        handle.remove()
    score = sign * (torch.from_numpy(weights) * logits).sum()
    score.backward()
    activation = store["a"][0].detach().numpy()
    gradient = store["a"].grad[0].numpy()
    model.zero_grad(set_to_none=True)
    return reference_gradcam(activation, gradient), float(score.detach())


def one_class(weights: np.ndarray, index: int, classes: int) -> np.ndarray:
    """``weights`` (h, w) on channel ``index`` of ``classes``, zeros elsewhere."""
    out = np.zeros((classes, *weights.shape))
    out[index] = weights
    return out


def test_region_gradcam_equals_the_direct_reference() -> None:
    model, x, mask = TinySegmenter().eval(), images(), region()
    explanation = ng.explain(model, x, target=ng.OutputRegion("nuclei", mask), card=DENSE)
    expected, score = reference_region_gradcam(
        model, x[0], "decoder", one_class(mask.astype(float), 1, 3)
    )
    assert explanation.layer == "decoder"
    np.testing.assert_allclose(explanation.cam[0], expected, rtol=1e-4, atol=1e-6)
    assert explanation.scores[0] == pytest.approx(score, rel=1e-5)


def test_a_coarse_output_weighs_each_cell_by_its_area_inside_the_mask() -> None:
    model, x = TinySegmenter(upsample=False).eval(), images(2)
    masks = np.stack([region(), region(2, 31, 9, 14)])
    explanation = ng.explain(model, x, target=ng.OutputRegion("stroma", masks), card=DENSE)
    for image, mask, cam, found in zip(x, masks, explanation.cam, explanation.scores, strict=True):
        inside = mask.reshape(16, 2, 16, 2).mean(axis=(1, 3))  # fraction of each 2x2 cell
        expected, score = reference_region_gradcam(model, image, "decoder", one_class(inside, 2, 3))
        np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-6)
        assert found == pytest.approx(score, rel=1e-5)


@pytest.mark.parametrize(("name", "sign"), [("nuclei", 1.0), ("background", -1.0)])
def test_a_single_channel_map_is_a_sigmoid_map(name: str, sign: float) -> None:
    model, x, mask = TinySegmenter(classes=1).eval(), images(), region()
    card = ModelCard(classes=("background", "nuclei"), output="dense", default_layer="decoder")
    explanation = ng.explain(model, x, target=ng.OutputRegion(name, mask), card=card)
    weights = mask.astype(float)[None]
    expected, score = reference_region_gradcam(model, x[0], "decoder", weights, sign)
    np.testing.assert_allclose(explanation.cam[0], expected, rtol=1e-4, atol=1e-6)
    assert explanation.scores[0] == pytest.approx(score, rel=1e-5)


def test_a_class_target_on_a_dense_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"class logits .* says 'dense'"):
        ng.explain(TinySegmenter().eval(), images(), target="nuclei", card=DENSE)


def test_an_output_region_on_a_classifier_is_refused() -> None:
    card = ModelCard(classes=CLASSES)
    with pytest.raises(ValueError, match=r"needs a model whose output is dense .* says 'classes'"):
        ng.explain(ResNetLike(n_classes=3).eval(), images(), target=ng.OutputRegion(1), card=card)


def test_a_mask_of_another_size_than_the_image_is_refused() -> None:
    target = ng.OutputRegion("nuclei", np.ones((20, 24), dtype=bool))
    with pytest.raises(ValueError, match="mask is 20 x 24 pixels and the image 32 x 32"):
        ng.explain(TinySegmenter().eval(), images(), target=target, card=DENSE)


def test_an_empty_mask_is_refused() -> None:
    with pytest.raises(ValueError, match="'cells' is empty"):
        ng.OutputRegion("nuclei", np.zeros((SIZE, SIZE), dtype=bool), label="cells")
