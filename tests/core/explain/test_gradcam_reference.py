"""The fast path equals a direct full-graph reference of Grad-CAM on several architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.card import ModelCard
from tests.architectures import build
from tests.core.reference import reference_activations_and_gradients, reference_gradcam

CASES = [
    ("resnet", "layer3", (3, 64, 64)),
    ("resnet", "layer2.body.0", (3, 64, 72)),
    ("vgg", "features.6", (3, 64, 64)),
    ("vgg", "features.3", (3, 64, 64)),
    ("branchy", "mix", (3, 48, 40)),
    ("branchy", "branch_b.0", (3, 48, 40)),
    ("single_logit", "features.1", (3, 40, 40)),
]


def assert_same_map(fast: np.ndarray, reference: np.ndarray) -> None:
    scale = max(float(np.abs(reference).max()), 1e-12)
    assert fast.shape == reference.shape
    assert np.abs(fast - reference).max() / scale < 1e-5


@pytest.mark.parametrize(("arch", "layer", "shape"), CASES)
@pytest.mark.parametrize("target", [0, 1])
def test_fast_path_equals_reference(arch: str, layer: str, shape: tuple, target: int) -> None:
    model = build(arch)
    image = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    explanation = ng.explain(model, image[None], layer=layer, target=target)

    layer_module = dict(model.named_modules())[layer]
    activation, gradient = reference_activations_and_gradients(model, image, layer_module, target)
    expected = reference_gradcam(activation, gradient)

    assert explanation.cam.dtype == np.float32
    assert expected.max() > 0, "degenerate case: the reference map is all zero"
    assert_same_map(explanation.cam[0], expected)


@pytest.mark.parametrize("arch", ["resnet", "branchy", "single_logit"])
def test_batch_equals_one_by_one(arch: str) -> None:
    model = build(arch)
    batch = torch.randn(4, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    together = ng.explain(model, batch)
    for i in range(len(batch)):
        alone = ng.explain(model, batch[i : i + 1])
        assert alone.targets[0] == together.targets[i]
        np.testing.assert_allclose(alone.cam[0], together.cam[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alone.scores[0], together.scores[i], rtol=1e-5)


def test_per_image_targets() -> None:
    model = build("resnet")
    batch = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    explanation = ng.explain(model, batch, target=[4, 0, 2])
    assert explanation.targets.tolist() == [4, 0, 2]
    single = ng.explain(model, batch[1:2], target=0)
    np.testing.assert_allclose(single.cam[0], explanation.cam[1], rtol=1e-5, atol=1e-6)


def test_top_class_and_probabilities_match_softmax() -> None:
    model = build("resnet")
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    explanation = ng.explain(model, batch)
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(batch), dim=1)
    assert explanation.targets.tolist() == probs.argmax(1).tolist()
    np.testing.assert_allclose(explanation.probabilities, probs.max(1).values.numpy(), rtol=1e-5)


def test_single_logit_positive_and_negative_class() -> None:
    model = build("single_logit")
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    model.eval()
    with torch.no_grad():
        logit = float(model(image)[0, 0])
    positive = ng.explain(model, image, target=1)
    negative = ng.explain(model, image, target=0)
    top = ng.explain(model, image)
    assert positive.scores[0] == pytest.approx(logit, rel=1e-5)
    assert negative.scores[0] == pytest.approx(-logit, rel=1e-5)
    assert positive.probabilities[0] + negative.probabilities[0] == pytest.approx(1.0, abs=1e-6)
    assert top.targets[0] == int(logit > 0)
    card = ModelCard(classes=("benign", "tumour"), input_size=(32, 32))
    named = ng.explain(model, image, target="tumour", card=card)
    assert named.target_names == ("tumour",)
    np.testing.assert_array_equal(named.cam, positive.cam)
