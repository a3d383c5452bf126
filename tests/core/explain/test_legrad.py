"""LeGrad against a direct, slow reference of the paper's definition, and its refusals.

The model under test attends with fused ``scaled_dot_product_attention``; the reference runs
the same weights in float64 with an explicit, kept softmax, takes each chosen block's own
score through the model's final norm and head on the full graph, differentiates it with
respect to that block's probabilities alone, and applies ReLU and the means in loops.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.models.vit_demo_net import build_vit_demo_net
from tests.core.explain.attention_reference import Attention, TinyViT, explicit_copy
from tests.core.explain.test_attention_methods import RotatedAttention, assert_close, images
from tests.core.explain.test_fast_path import live_autograd_tensors


class ScoredTinyViT(TinyViT):
    """TinyViT with timm's ``forward_head``: its output is ``forward_head(norm(blocks(x)))``."""

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens[:, 0] if self.cls_token is not None else tokens.mean(dim=1))


def scored_vit(seed: int = 0, **kwargs: object) -> ScoredTinyViT:
    torch.manual_seed(seed)
    return ScoredTinyViT(**kwargs).eval()


def legrad_reference(
    outputs: list[torch.Tensor],
    probabilities: list[torch.Tensor],
    project: Callable[[torch.Tensor], torch.Tensor],
    targets: list[int],
    prefix: int,
    grid: tuple,
) -> torch.Tensor:
    """Per chosen block l, on the full graph: mean_(h, i) ReLU(d s^l / d A^l)[i, :], looped.

    ``outputs`` and ``probabilities`` are the chosen blocks' output tokens and attention
    probabilities, kept with their graph; ``project`` maps tokens to the model's output.
    """
    gradients = []
    for tokens, attention in zip(outputs, probabilities, strict=True):
        logits = project(tokens)
        score = sum(logits[i, t] for i, t in enumerate(targets))
        (gradient,) = torch.autograd.grad(score, attention, retain_graph=True)
        gradients.append(gradient)
    maps = []
    for image in range(len(targets)):
        relevance = torch.zeros(gradients[0].shape[-1], dtype=torch.float64)
        for gradient in gradients:
            heads, queries = gradient.shape[1], gradient.shape[2]
            for head in range(heads):
                for query in range(queries):
                    relevance += gradient[image, head, query].double().clamp(min=0) / (
                        heads * queries
                    )
        maps.append((relevance / len(gradients))[prefix:].reshape(grid))
    return torch.stack(maps)


def explicit_blocks(explicit: ScoredTinyViT, x: torch.Tensor) -> tuple[list, list]:
    """Every block's output tokens and attention probabilities, with their graph (float64)."""
    outputs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, i, o: outputs.append(o)) for b in explicit.blocks]
    explicit(x.double())
    for handle in handles:
        handle.remove()
    return outputs, [m.kept for m in explicit.modules() if isinstance(m, Attention)]


def reference_legrad(
    model: ScoredTinyViT, x: torch.Tensor, targets: list[int], blocks: int, prefix: int, grid: tuple
) -> torch.Tensor:
    """The reference on a float64 explicit-softmax copy of ``model``, its last ``blocks``."""
    explicit = explicit_copy(model).double()
    outputs, attentions = explicit_blocks(explicit, x)

    def project(tokens: torch.Tensor) -> torch.Tensor:
        return explicit.forward_head(explicit.norm(tokens))

    return legrad_reference(outputs[-blocks:], attentions[-blocks:], project, targets, prefix, grid)


@pytest.mark.parametrize(
    ("options", "blocks"),
    [
        ({}, 2),
        ({}, None),
        ({}, 1),
        ({"registers": 3}, 2),
        ({"qk_norm": True, "depth": 4}, 3),
        ({"class_token": False, "registers": 2}, None),
    ],
)
def test_legrad_equals_the_paper(options: dict, blocks: int | None) -> None:
    model, x = scored_vit(**options), images()
    found = ng.explain(model, x, method="legrad", target=[1, 3], options=ng.LegradOptions(blocks))
    depth = options.get("depth", 3)
    prefix = int(options.get("class_token", True)) + options.get("registers", 0)
    expected = reference_legrad(model, x, [1, 3], blocks or depth, prefix, (4, 3))
    assert_close(found.cam, expected)
    assert found.stride == (8.0, 8.0)
    first = depth - (blocks or depth)
    assert found.layer == (
        f"blocks.{first}" if first == depth - 1 else f"blocks.{first} .. blocks.{depth - 1}"
    )
    assert found.targets.tolist() == [1, 3]


def test_several_classes_and_a_likeness_are_scored_per_block() -> None:
    """Each block's output is scored as the model's is: summed classes, a cosine likeness."""
    model, x = scored_vit(), images()
    reference = torch.randn(5, generator=torch.Generator().manual_seed(7))
    unit = torch.nn.functional.normalize(reference, dim=0).double()
    cases = [
        (ng.Classes((1, 3)), ng.ModelCard(), lambda y: y[:, [1, 3]].sum(dim=1, keepdim=True)),
        (
            ng.LikeEmbedding(reference.tolist(), "reference"),
            ng.ModelCard(output="embedding"),
            lambda y: torch.nn.functional.normalize(y, dim=1) @ unit[:, None],
        ),
    ]
    explicit = explicit_copy(model).double()
    for target, card, score in cases:
        found = ng.explain(model, x, method="legrad", target=target, card=card)
        outputs, attentions = explicit_blocks(explicit, x)

        def project(tokens: torch.Tensor, score=score) -> torch.Tensor:
            return score(explicit.forward_head(explicit.norm(tokens)))

        expected = legrad_reference(outputs[-2:], attentions[-2:], project, [0, 0], 1, (4, 3))
        assert_close(found.cam, expected)


def test_each_block_gets_the_gradient_of_its_own_score_only() -> None:
    """Summing the blocks' scores on the full graph would add later blocks' gradients."""
    model, x = scored_vit(depth=3), images()
    found = ng.explain(model, x, method="legrad", target=[1, 3], options=ng.LegradOptions(None))
    explicit = explicit_copy(model).double()
    outputs, attentions = explicit_blocks(explicit, x)
    total = sum(explicit.forward_head(explicit.norm(z))[[0, 1], [1, 3]].sum() for z in outputs)
    summed = torch.autograd.grad(total, attentions)
    wrong = sum(g.clamp(min=0).mean(dim=(1, 2)) for g in summed)[:, 1:].reshape(2, 4, 3) / 3
    assert not np.allclose(found.cam, wrong.numpy(), rtol=1e-3)


def test_vit_demo_geometry_and_nothing_kept() -> None:
    torch.manual_seed(0)
    model = build_vit_demo_net().train()
    flags = [p.requires_grad for p in model.parameters()]
    before = live_autograd_tensors()
    found = ng.explain(model, torch.randn(1, 3, 96, 64), method="legrad")
    assert live_autograd_tensors() == before
    geometry = ng.map_geometry(model, (96, 64), method="legrad")
    assert (geometry.layer, geometry.shape, geometry.stride) == (
        found.layer,
        found.cam.shape[-2:],
        found.stride,
    )
    assert found.cam.shape == (1, 12, 8) and (found.cam >= 0).all() and found.cam.max() > 0
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_model_without_a_declared_score_projection_is_refused() -> None:
    with pytest.raises(ValueError, match=r"LeGrad scores each block .* TinyViT is none of them"):
        ng.explain(TinyViT().eval(), images(), method="legrad")


def test_options_read_in_layer_names() -> None:
    from napari_gradcam.core.explain.method_options import options_label

    assert options_label(ng.LegradOptions()) == ""
    assert options_label(ng.LegradOptions(3)) == "blocks 3"
    assert options_label(ng.LegradOptions(None)) == "blocks all"


def test_more_blocks_than_the_model_has_are_refused() -> None:
    with pytest.raises(ValueError, match="legrad_blocks=5, but the model has 3 transformer"):
        ng.explain(scored_vit(), images(), method="legrad", options=ng.LegradOptions(5))
    with pytest.raises(ValueError, match="legrad_blocks must be a number of blocks >= 1"):
        ng.LegradOptions(0)


class DoubledScoredViT(ScoredTinyViT):
    """Its forward is not ``forward_head(norm(blocks(x)))``: the declaration does not hold."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


def test_a_forward_that_is_not_the_declared_one_is_refused() -> None:
    torch.manual_seed(0)
    model = DoubledScoredViT().eval()
    with pytest.raises(ValueError, match="does not reproduce the model's output"):
        ng.explain(model, images(), method="legrad")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_unreadable_attention_is_refused_by_name() -> None:
    model = scored_vit()
    rotated = RotatedAttention(32, 4)
    rotated.load_state_dict(model.blocks[2].attn.state_dict())
    model.blocks[2].attn = rotated
    with pytest.raises(ValueError, match=r"'blocks\.2\.attn' \(RotatedAttention\).*reproduce"):
        ng.explain(model, images(), method="legrad")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_tta_is_the_mean_over_flipped_images() -> None:
    model, x = scored_vit(registers=1).double(), images(1, 32, 32).double()
    result = ng.explain(model, x, method="legrad", target=2, tta=True).cam
    maps = []
    for dims in [(), (-1,), (-2,), (-2, -1)]:
        flipped = x.flip(dims) if dims else x
        cam = torch.from_numpy(ng.explain(model, flipped, method="legrad", target=2).cam)
        maps.append(cam.flip(dims) if dims else cam)
    np.testing.assert_allclose(result, torch.stack(maps).mean(dim=0).numpy(), rtol=1e-6)
