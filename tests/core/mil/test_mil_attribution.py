"""Tile scores of slide-level models against direct implementations of their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.mil.aggregators import AttentionMIL
from napari_gradcam.core.mil.attribution import (
    attention_scores,
    gradient_x_embedding,
    integrated_gradients,
    offers_attention,
)
from napari_gradcam.core.mil.drill_down import EmbeddingDirection, drill_down
from napari_gradcam.core.mil.tile_deletion import removal_faithfulness


def _bag(n: int = 40, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


class HookOnlyMIL(AttentionMIL):
    """The same aggregator without its ``attention_weights`` method: read by the hook."""

    attention_weights = None


class MethodOnlyMIL(nn.Module):
    """An aggregator that offers ``attention_weights`` and has no module scoring the tiles."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.score = nn.Parameter(torch.randn(width))
        self.classifier = nn.Linear(width, 2)

    def attention_weights(self, embeddings: torch.Tensor) -> torch.Tensor:
        return torch.softmax(embeddings @ self.score, dim=1)[..., None]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.classifier((self.attention_weights(embeddings) * embeddings).sum(dim=1))


def _aggregator(branch_per_class: bool, kind: type[AttentionMIL] = AttentionMIL) -> AttentionMIL:
    torch.manual_seed(3)
    aggregator = kind(
        16, n_classes=3, hidden=24, attention_hidden=8, branch_per_class=branch_per_class
    )
    return aggregator.eval()


@pytest.fixture(params=[False, True], ids=["abmil", "clam-mb"])
def aggregator(request) -> AttentionMIL:
    return _aggregator(request.param)


def test_attention_equals_the_aggregators_own_attention(aggregator):
    bag = _bag()
    hooked = _aggregator(aggregator.branch_per_class, HookOnlyMIL)
    with torch.no_grad():
        own = aggregator.attention_weights(bag[None])[0]
    for branch in range(own.shape[1]):
        scores = attention_scores(aggregator, bag, "attention", branch)
        from_hook = attention_scores(hooked, bag, "attention", branch)
        np.testing.assert_allclose(scores, own[:, branch].numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(from_hook, scores, rtol=1e-5, atol=1e-7)
        assert scores.sum() == pytest.approx(1.0, abs=1e-5)


def test_an_aggregator_that_offers_attention_needs_no_attention_module():
    torch.manual_seed(0)
    aggregator, bag = MethodOnlyMIL(16).eval(), _bag()
    assert offers_attention(aggregator) and not offers_attention(HookOnlyMIL(16))
    scores = attention_scores(aggregator, bag, None)
    expected = torch.softmax(bag @ aggregator.score, dim=0).detach().numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-7)


def test_attention_of_an_unknown_or_unfit_module_is_refused(aggregator):
    hooked = _aggregator(aggregator.branch_per_class, HookOnlyMIL)
    with pytest.raises(ValueError, match=r"no module 'attn'.*attention"):
        attention_scores(hooked, _bag(), "attn")
    with pytest.raises(ValueError, match=r"not attention scores|must run once"):
        attention_scores(hooked, _bag(), "classifier")


def test_gradient_x_embedding_equals_the_jacobian_reference(aggregator):
    bag = _bag()
    scores, gradient = gradient_x_embedding(aggregator, bag, target=2)
    jacobian = torch.autograd.functional.jacobian(lambda e: aggregator(e[None])[0, 2], bag)
    torch.testing.assert_close(gradient, jacobian)
    np.testing.assert_allclose(scores, (jacobian * bag).sum(dim=1).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_integrated_gradients_are_complete_within_one_percent(aggregator, baseline):
    result = integrated_gradients(aggregator, _bag(), target=1, baseline=baseline, steps=32)
    change = result.logit - result.baseline_logit
    assert abs(result.scores.sum() - change) <= 0.01 * abs(change)
    assert result.completeness_error <= 0.01


@pytest.mark.slow  # 1,000 autograd steps of the reference sum per aggregator (about 30 s)
def test_integrated_gradients_equal_a_fine_riemann_sum(aggregator):
    bag, steps = _bag(n=12), 1000
    result = integrated_gradients(aggregator, bag, target=0, steps=32)
    total = torch.zeros_like(bag)
    for alpha in (np.arange(steps) + 0.5) / steps:  # midpoint rule, straight from the definition
        point = (alpha * bag).requires_grad_(True)
        total += torch.autograd.grad(aggregator(point[None])[0, 0], point)[0] / steps
    reference = (bag * total).sum(dim=1).numpy()
    # the integrand has ReLU kinks: quadrature and the midpoint rule agree to ~1 % of the range
    np.testing.assert_allclose(result.scores, reference, atol=0.01 * np.abs(reference).max())


class MeanLinear(nn.Module):
    """Mean pooling then a linear layer: tile i's exact share of the logit is w . e_i / N."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 1, bias=False)

    def forward(self, bags: torch.Tensor) -> torch.Tensor:
        return self.fc(bags.mean(dim=1))


def test_removing_the_top_tiles_drops_the_logit_more_than_random_ones():
    torch.manual_seed(0)
    model, bag = MeanLinear(16), _bag(n=50)
    weight = model.fc.weight[0].detach()
    bag[:5] += 10 * weight / weight.norm()  # five tiles push the class hard
    scores, _ = gradient_x_embedding(model, bag, target=0)
    curve = removal_faithfulness(model, bag, 0, scores, removed=[5, 10], repeats=8)
    assert list(curve.removed) == [5, 10]
    assert np.all(curve.gain_over_random > 0)
    assert set(np.argsort(-scores)[:5]) == set(range(5))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def test_drill_down_is_gradcam_of_the_embedding_projection():
    encoder, direction = Encoder().eval(), torch.randn(6)
    tile = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    result = drill_down(encoder, tile, direction, layer="features")
    manual = nn.Sequential()  # the projection written out by hand, same weights
    manual.add_module("features", encoder.features)
    manual.add_module(
        "rest", nn.Sequential(encoder.pool, nn.Flatten(), nn.Linear(6, 1, bias=False))
    )
    manual.rest[2].weight.data = direction[None]
    reference = explain(manual, tile, layer="features", target=1)
    np.testing.assert_allclose(result.cam, reference.cam, rtol=1e-5, atol=1e-6)
    assert result.target_names == ("for",)


def test_the_projection_refuses_embeddings_of_another_width():
    with pytest.raises(ValueError, match=r"needs \(N, 4\) embeddings"):
        EmbeddingDirection(Encoder(), torch.ones(4))(torch.rand(1, 3, 8, 8))
