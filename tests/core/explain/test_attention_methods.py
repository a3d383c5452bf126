"""Attention rollout, class-token attention and transformer attribution against their papers.

The model under test attends with fused ``scaled_dot_product_attention``; the references read
the probabilities (and their gradients) materialised by the same weights with an explicit
softmax, and apply each paper's formula in slow float64 loops.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core.explain.context import ExplanationCancelled
from napari_gradcam.core.explain.hooks import attention_modules, capture_attention
from napari_gradcam.core.explain.methods.attention_math import discard_lowest
from tests.core.explain.attention_reference import (
    Attention,
    attention_and_gradients,
    explicit_copy,
    reference_class_attention,
    reference_relevance,
    reference_rollout,
    tiny_vit,
)
from tests.core.explain.test_fast_path import live_autograd_tensors

METHODS = ("rollout", "attention", "transformer-attribution")


def images(n: int = 2, height: int = 32, width: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def assert_close(found: np.ndarray, expected: torch.Tensor, tolerance: float = 1e-5) -> None:
    expected = expected.numpy()
    scale = max(float(np.abs(expected).max()), 1e-12)
    assert found.shape == expected.shape
    assert np.abs(found - expected).max() / scale < tolerance


@pytest.mark.parametrize(
    "options",
    [{}, {"registers": 4}, {"qk_norm": True}, {"registers": 2, "patch": 4, "depth": 4}],
)
def test_rollout_equals_the_paper(options: dict) -> None:
    model, x = tiny_vit(**options), images()
    found = ng.explain(model, x, method="rollout", target=[1, 3])
    attentions, _ = attention_and_gradients(explicit_copy(model), x, [1, 3])
    patch = options.get("patch", 8)
    grid = (32 // patch, 24 // patch)
    expected = reference_rollout(attentions, 1 + options.get("registers", 0), grid)
    assert_close(found.cam, expected)
    assert found.stride == (float(patch), float(patch))
    assert found.layer == f"blocks.0.attn .. blocks.{options.get('depth', 3) - 1}.attn"


@pytest.mark.parametrize("discard", [0.3, 0.6])
def test_rollout_discard_ratio(discard: float) -> None:
    model, x = tiny_vit(registers=1), images()
    found = ng.explain(model, x, method="rollout", options=ng.RolloutOptions(discard)).cam
    attentions, _ = attention_and_gradients(explicit_copy(model), x, [0, 0])
    expected = reference_rollout(attentions, 2, (4, 3), discard)
    assert_close(found, expected)
    plain = reference_rollout(attentions, 2, (4, 3))
    assert np.abs(found - plain.numpy()).max() > 1e-3, "discarding changed nothing"


def reference_fused_rollout(
    attentions: list[torch.Tensor], prefix: int, grid: tuple[int, int], fusion: str
) -> torch.Tensor:
    """Rollout with the heads fused by max or min (as in vit-explain), in slow float64 loops."""
    maps = []
    for image in range(len(attentions[0])):
        tokens = attentions[0].shape[-1]
        rollout = torch.eye(tokens, dtype=torch.float64)
        for attention in attentions:
            fused = torch.empty(tokens, tokens, dtype=torch.float64)
            for row in range(tokens):
                for col in range(tokens):
                    weights = [
                        float(attention[image, h, row, col]) for h in range(attention.shape[1])
                    ]
                    fused[row, col] = max(weights) if fusion == "max" else min(weights)
            fused = fused + torch.eye(tokens, dtype=torch.float64)
            rollout = (fused / fused.sum(dim=1, keepdim=True)) @ rollout
        maps.append(rollout[0, prefix:].reshape(grid))
    return torch.stack(maps)


@pytest.mark.parametrize("fusion", ["max", "min"])
def test_rollout_head_fusion(fusion: str) -> None:
    model, x = tiny_vit(registers=1), images()
    options = ng.RolloutOptions(head_fusion=fusion)
    found = ng.explain(model, x, method="rollout", options=options).cam
    attentions, _ = attention_and_gradients(explicit_copy(model), x, [0, 0])
    assert_close(found, reference_fused_rollout(attentions, 2, (4, 3), fusion))
    mean = ng.explain(model, x, method="rollout", options=ng.RolloutOptions(head_fusion="mean"))
    assert_close(mean.cam, reference_rollout(attentions, 2, (4, 3)))  # the default: the paper's
    assert np.abs(found - mean.cam).max() > 1e-3, "fusing by max or min changed nothing"
    with pytest.raises(ValueError, match="unknown head_fusion"):
        ng.RolloutOptions(head_fusion="sum")


def test_discard_lowest_zeroes_the_weakest_of_each_row() -> None:
    rows = torch.tensor([[[0.1, 0.4, 0.2, 0.3], [0.7, 0.05, 0.15, 0.1]]])
    expected = torch.tensor([[[0.0, 0.4, 0.0, 0.3], [0.7, 0.0, 0.15, 0.0]]])
    assert torch.equal(discard_lowest(rows, 0.5), expected)
    assert discard_lowest(rows, 0.2) is rows  # floor(0.2 * 4) = 0 weights
    with pytest.raises(ValueError, match="discard_ratio"):
        ng.RolloutOptions(discard_ratio=1.0)


@pytest.mark.parametrize("registers", [0, 3])
def test_class_attention_equals_dino(registers: int) -> None:
    model, x = tiny_vit(registers=registers, heads=4), images()
    attentions, _ = attention_and_gradients(explicit_copy(model), x, [0, 0])
    per_head = reference_class_attention(attentions[-1], 1 + registers, (4, 3))
    found = ng.explain(model, x, method="attention")
    assert_close(found.cam, per_head.mean(dim=1))
    assert found.layer == "blocks.2.attn"
    for head in range(4):
        one = ng.explain(model, x, method="attention", options=ng.AttentionOptions(head)).cam
        assert_close(one, per_head[:, head])
    with pytest.raises(ValueError, match=r"4 heads \(0 to 3\)"):
        ng.explain(model, x, method="attention", options=ng.AttentionOptions(4))


@pytest.mark.parametrize("options", [{}, {"registers": 4, "qk_norm": True}])
@pytest.mark.parametrize("targets", [[0, 4], [2, 2]])
def test_transformer_attribution_equals_chefer(options: dict, targets: list[int]) -> None:
    model, x = tiny_vit(**options), images()
    found = ng.explain(model, x, method="transformer-attribution", target=targets)
    attentions, gradients = attention_and_gradients(explicit_copy(model), x, targets)
    expected = reference_relevance(attentions, gradients, 1 + options.get("registers", 0), (4, 3))
    assert expected.abs().max() > 0
    assert_close(found.cam, expected)
    assert found.stride == (8.0, 8.0)


def test_attention_gradient_from_values_equals_the_softmax_gradient() -> None:
    """dY/dA = (dY/dO) V^T, read at the fused model, equals autograd's at the explicit one."""
    model, x = tiny_vit(), images()
    _, expected = attention_and_gradients(explicit_copy(model), x, [3, 1])
    blocks, modules = [], attention_modules(model)
    with capture_attention(modules, blocks.append, with_grad=True) as taps:
        logits = model(x)
        outputs = torch.autograd.grad(logits[[0, 1], [3, 1]].sum(), taps.outputs)
    for block, output_grad, reference in zip(blocks, outputs, expected, strict=True):
        n, heads, tokens, dim = block.values.shape
        per_head = output_grad.reshape(n, tokens, heads, dim).transpose(1, 2)
        found = per_head @ block.values.transpose(-2, -1)
        torch.testing.assert_close(found.double(), reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_model_left_exactly_as_it_was(method: str) -> None:
    model = tiny_vit(registers=1)
    model.train()
    model.blocks[1].eval()
    model.head.weight.requires_grad_(False)
    training = {name: m.training for name, m in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    state = {name: t.clone() for name, t in model.state_dict().items()}
    attributes = {name: dict(vars(m)) for name, m in model.named_modules()}
    live = live_autograd_tensors()
    ng.explain(model, images(), method=method)
    assert live_autograd_tensors() == live, "an autograd graph outlived the call"
    assert training == {name: m.training for name, m in model.named_modules()}
    assert flags == {name: p.requires_grad for name, p in model.named_parameters()}
    assert all(torch.equal(state[name], t) for name, t in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    for name, module in model.named_modules():
        for key in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            assert not getattr(module, key), f"{key} left on {name!r}"
        assert module.fused_attn if isinstance(module, Attention) else True
        assert vars(module).keys() == attributes[name].keys()


def test_cancel_between_blocks_leaves_no_hooks() -> None:
    model, steps = tiny_vit(depth=4), []
    with pytest.raises(ExplanationCancelled):
        monitor = ng.Monitor(
            progress=lambda done, total: steps.append((done, total)),
            should_stop=lambda: len(steps) > 2,
        )
        ng.explain(model, images(), method="rollout", monitor=monitor)
    assert steps == [(0, 4), (1, 4), (2, 4)]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_fused_and_explicit_models_give_the_same_maps() -> None:
    model, x = tiny_vit(registers=2), images()
    for method in METHODS:
        fused = ng.explain(model, x, method=method).cam
        explicit = ng.explain(explicit_copy(model), x, method=method).cam
        np.testing.assert_allclose(fused, explicit, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_tta_is_the_mean_over_flipped_images(method: str) -> None:
    model, x = tiny_vit(registers=1).double(), images(1).double()
    result = ng.explain(model, x, method=method, target=2, tta=True).cam
    maps = []
    for dims in [(), (-1,), (-2,), (-2, -1)]:
        cam = torch.from_numpy(
            ng.explain(model, x.flip(dims) if dims else x, method=method, target=2).cam
        )
        maps.append(cam.flip(dims) if dims else cam)
    np.testing.assert_allclose(result, torch.stack(maps).mean(dim=0).numpy(), rtol=1e-6)


def test_bfloat16_models_are_read_to_their_precision() -> None:
    x = images()
    for method in METHODS:
        exact = ng.explain(tiny_vit(), x, method=method, target=[1, 2]).cam
        rounded = ng.explain(tiny_vit().to(torch.bfloat16), x, method=method, target=[1, 2]).cam
        assert np.abs(rounded - exact).max() < 0.02 * np.abs(exact).max()


def test_pooled_model_is_refused_with_a_pointer_to_gradcam() -> None:
    model = tiny_vit(class_token=False)
    for method in METHODS:
        with pytest.raises(ValueError, match=r"class token.*method='gradcam'"):
            ng.explain(model, images(), method=method)


class RotatedAttention(Attention):
    """Like rotary embeddings: the keys change after ``k_norm``, so q/k no longer tell A."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k).flip(-1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(self.norm(out.transpose(1, 2).reshape(n, tokens, dim)))


class TorchBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(x, x, x, need_weights=False)[0]


def test_unreadable_attention_is_refused_by_name() -> None:
    model = tiny_vit()
    rotated = RotatedAttention(32, 4)
    rotated.load_state_dict(model.blocks[1].attn.state_dict())
    model.blocks[1].attn = rotated
    with pytest.raises(ValueError, match=r"'blocks\.1\.attn' \(RotatedAttention\).*reproduce"):
        ng.explain(model, images(), method="rollout")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())

    model = tiny_vit()
    model.blocks[0] = nn.Sequential(model.blocks[0])  # a wrapper: still readable
    model.blocks[2] = TorchBlock(32)
    with pytest.raises(ValueError, match=r"'blocks\.2\.attn' \(MultiheadAttention\).*gradcam"):
        ng.explain(model, images(), method="attention")


class AttentionBlock(nn.Module):
    """A wrapper whose name says attention, around a readable module."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.inner = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_wrappers_of_readable_attention_are_read() -> None:
    model, x = tiny_vit(), images()
    expected = ng.explain(model, x, method="rollout").cam
    model.blocks[1].attn = AttentionBlock(model.blocks[1].attn)
    np.testing.assert_array_equal(ng.explain(model, x, method="rollout").cam, expected)


def test_models_without_attention_or_hooks_are_refused() -> None:
    convnet = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    convnet(images())
    with pytest.raises(ValueError, match="patch size"):
        ng.explain(convnet, images(), method="rollout")
    model = tiny_vit()
    model.blocks = nn.Sequential(*(nn.Identity() for _ in range(2)))
    with pytest.raises(ValueError, match="no transformer attention module"):
        ng.explain(model, images(), method="rollout")
    scripted = torch.jit.trace(tiny_vit(), images())
    with pytest.raises(ValueError, match="TorchScript"):
        ng.explain(scripted, images(), method="transformer-attribution")
