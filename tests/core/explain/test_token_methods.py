"""CAM methods at token and channels-last layers of tiny transformers, against direct loops.

Each reference works on the layer's own output (tokens or (N, h, w, C)) with explicit
per-channel loops: it reshapes the patch tokens itself and never uses ``model_layers``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import napari_gradcam as ng
from tests.transformers import TinySwin, TinyViT

TARGETS = [1, 2]


def make(kind: str) -> tuple[nn.Module, str, int]:
    """(model, layer, prefix tokens); -1 prefix means a channels-last (N, h, w, C) layer."""
    torch.manual_seed(0)
    if kind == "vit":
        return TinyViT(reg_tokens=2).eval(), "blocks.1.norm1", 3
    return TinySwin().eval(), "layers.1", -1


def as_grid(output: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) from tokens (N, T, C) or channels-last (N, h, w, C), by hand."""
    if prefix < 0:
        return output.permute(0, 3, 1, 2)
    n, _, c = output.shape
    return output[:, prefix:].reshape(n, grid[0], grid[1], c).permute(0, 3, 1, 2)


def run(model: nn.Module, name: str, x: torch.Tensor, replace=None) -> tuple[torch.Tensor, ...]:
    """Logits and the layer's output; ``replace(output)`` substitutes the output when given."""
    seen = {}

    def hook(_m, _i, output):
        seen["out"] = output
        return None if replace is None else replace(output)

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, seen["out"]


def reference_gradcam(model, name, x, prefix, grid) -> torch.Tensor:
    cams = []
    for i, t in enumerate(TARGETS):
        logits, out = run(model, name, x[i : i + 1])
        (grad,) = torch.autograd.grad(logits[0, t], out)
        a, g = as_grid(out, prefix, grid)[0], as_grid(grad, prefix, grid)[0]
        cam = sum(g[c].mean() * a[c] for c in range(len(a)))
        cams.append(cam.clamp_min(0))
    return torch.stack(cams).detach()


def zero_channel(prefix: int, c: int):
    def replace(output: torch.Tensor) -> torch.Tensor:
        changed = output.clone()
        if prefix < 0:
            changed[..., c] = 0
        else:
            changed[:, prefix:, c] = 0  # patch tokens only; prefix tokens unchanged
        return changed

    return replace


@torch.no_grad()
def reference_ablationcam(model, name, x, prefix, grid) -> torch.Tensor:
    cams = []
    for i, t in enumerate(TARGETS):
        logits, out = run(model, name, x[i : i + 1])
        a = as_grid(out, prefix, grid)[0]
        y = logits[0, t]
        weights = [
            (y - run(model, name, x[i : i + 1], zero_channel(prefix, c))[0][0, t]) / y
            for c in range(len(a))
        ]
        cams.append(sum(w * a[c] for c, w in enumerate(weights)).clamp_min(0))
    return torch.stack(cams)


@torch.no_grad()
def reference_scorecam(model, name, x, prefix, grid) -> torch.Tensor:
    cams = []
    for i, t in enumerate(TARGETS):
        _, out = run(model, name, x[i : i + 1])
        a = as_grid(out, prefix, grid)[0]
        scores = []
        for c in range(len(a)):
            up = F.interpolate(a[c][None, None], size=x.shape[-2:], mode="bilinear")[0, 0]
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            scores.append(model(x[i : i + 1] * mask)[0, t])
        weights = torch.softmax(torch.stack(scores), dim=0)
        cams.append(sum(w * a[c] for c, w in enumerate(weights)).clamp_min(0))
    return torch.stack(cams)


@torch.no_grad()
def reference_eigencam(model, name, x, prefix, grid) -> torch.Tensor:
    cams = []
    for i in range(len(TARGETS)):
        _, out = run(model, name, x[i : i + 1])
        a = as_grid(out, prefix, grid)[0].double()
        matrix = a.reshape(len(a), -1).T  # (h*w, C)
        v = torch.linalg.svd(matrix, full_matrices=False).Vh[0]
        projection = (matrix @ v).reshape(grid)
        cams.append((projection * projection.sum().sign()).clamp_min(0).float())
    return torch.stack(cams)


REFERENCES = {
    "gradcam": reference_gradcam,
    "ablationcam": reference_ablationcam,
    "scorecam": reference_scorecam,
    "eigencam": reference_eigencam,
}


@pytest.mark.parametrize("method", sorted(REFERENCES))
@pytest.mark.parametrize("kind", ["vit", "swin"])
def test_methods_match_direct_references(kind: str, method: str) -> None:
    model, layer, prefix = make(kind)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    grid = (4, 4)
    ours = ng.explain(model, x, method=method, layer=layer, target=TARGETS)
    expected = REFERENCES[method](model, layer, x, prefix, grid).numpy()
    assert ours.cam.shape == (2, *grid) and expected.max() > 0
    np.testing.assert_allclose(ours.cam, expected, rtol=1e-3, atol=1e-4 * expected.max())
    assert ours.stride == (8.0, 8.0)


@pytest.mark.parametrize("method", ["gradcam++", "xgradcam", "layercam", "hirescam"])
def test_gradient_variants_see_the_same_map_as_a_convolutional_layer(method: str) -> None:
    """The tokens reshaped by hand into a conv-like module give the same map."""
    model, layer, _ = make("vit")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ours = ng.explain(model, x, method=method, layer=layer, target=TARGETS).cam

    class AsConv(nn.Module):
        """The model split at the layer: its patch tokens pass through an identity conv map."""

        def __init__(self) -> None:
            super().__init__()
            self.grid = nn.Identity()

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            def through_grid(output: torch.Tensor) -> torch.Tensor:
                n, _, c = output.shape
                patches = self.grid(output[:, 3:].reshape(n, 4, 4, c).permute(0, 3, 1, 2))
                return torch.cat([output[:, :3], patches.flatten(2).transpose(1, 2)], dim=1)

            return run(model, layer, inputs, through_grid)[0]

    expected = ng.explain(AsConv(), x, method=method, layer="grid", target=TARGETS).cam
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("model", "default"),
    [
        (TinyViT(), "blocks.1.norm1"),
        (TinyViT(reg_tokens=4), "blocks.1.norm1"),
        (TinyViT(global_pool="avg", class_token=False), "norm"),
        (TinySwin(), "norm"),
    ],
)
def test_default_layer_is_one_whose_patch_tokens_reach_the_output(model, default) -> None:
    assert ng.default_layer(model.eval(), (1, 3, 32, 32)) == default
    result = ng.explain(model, torch.randn(1, 3, 32, 32))
    assert result.layer == default and result.cam.std() > 0


def test_class_token_head_blocks_after_attention_are_refused() -> None:
    model = TinyViT().eval()
    with pytest.raises(ValueError, match=r"no gradient from the patch tokens of layer 'blocks\.1'"):
        ng.explain(model, torch.randn(1, 3, 32, 32), layer="blocks.1")


def test_candidate_layouts_list_tokens_with_their_grid() -> None:
    layouts = ng.candidate_layouts(TinyViT(reg_tokens=1).eval(), (1, 3, 32, 32))
    assert layouts["blocks.1.norm1"].label() == "tokens 4x4"
    assert layouts["patch_embed.proj"].label() == "4x4"
    assert not any("attn_drop" in name for name in layouts)


def test_dynamic_non_square_input_is_placed_at_the_patch_size() -> None:
    model = TinyViT(dynamic_img_size=True, global_pool="avg", class_token=False).eval()
    result = ng.explain(model, torch.randn(1, 3, 40, 28), layer="blocks.1", origin=(5.0, 7.0))
    # 28 / 8 = 3.5: the grid floors to 3 columns, and the stride stays exactly 8
    assert result.cam.shape == (1, 5, 3) and result.stride == (8.0, 8.0)
