"""The trust panel on a real timm ViT (random weights, never downloaded).

Run in the env that has timm: ``.venv-timm/bin/python -m pytest -m timm tests/core/trust``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.trust.faithfulness import deletion_insertion
from napari_gradcam.core.trust.features import feature_stack
from napari_gradcam.core.trust.sanity import parameter_layers, sanity_check

pytestmark = pytest.mark.timm
timm = pytest.importorskip("timm", reason="timm (and torchvision) are not installed here")


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "vit_small_patch16_224", pretrained=False, num_classes=4, img_size=64
    ).eval()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_cascade_walks_the_twelve_blocks_from_the_top(vit, batch) -> None:
    units = parameter_layers(vit, batch)[::-1]
    blocks = [f"blocks.{i}" for i in range(11, -1, -1)]
    assert units == ["head", "norm", *blocks, "patch_embed.proj", ""]


@pytest.mark.parametrize("method", ["gradcam", "rollout"])
def test_sanity_and_deletion_insertion_run_on_the_patch_grid(vit, batch, method) -> None:
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    original = ng.explain(vit, batch, method=method, target=[2])
    assert original.cam.shape == (1, 4, 4) and original.stride == (16.0, 16.0)
    check = sanity_check(vit, batch, original, steps=4, repeats=1)
    assert [s.randomised[-1] for s in check.steps] == ["head", "norm", "blocks.11", "blocks.10"]
    assert all(s.spearman is not None for s in check.steps[2:])
    last = check.steps[-1].spearman
    assert check.depends_on_weights == (last < 0.5) and check.verdict
    if method == "gradcam":  # class-specific: the head and the top blocks shape it
        assert last < 0.9
    # rollout of random weights (std 0.02): near-uniform attention before and after, so the
    # cascade rightly reports that this map does not depend on these weights
    curves = deletion_insertion(vit, batch, original.cam[0], 2, steps=8)
    whole = float(original.probabilities[0])
    assert curves.deletion[0] == pytest.approx(whole, abs=1e-5)
    assert curves.insertion[-1] == pytest.approx(whole, abs=1e-5)
    assert curves.deletion[-1] == pytest.approx(curves.insertion[0], abs=1e-5)
    assert 0.0 <= curves.deletion_auc <= 1.0 and 0.0 <= curves.insertion_auc <= 1.0
    for key, value in vit.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_feature_stack_is_the_patch_grid_of_the_default_layer(vit, batch) -> None:
    stack = feature_stack(vit, batch, target=2)
    assert stack.layer == "blocks.11.norm1" and stack.activations.shape == (384, 4, 4)
    assert stack.prefix_tokens == 1 and stack.stride == (16.0, 16.0)
    assert np.all(np.diff(stack.contributions) <= 0)
