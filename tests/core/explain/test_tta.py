"""Test-time augmentation: the mean of the flipped explanations, flipped back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.explain.methods import METHODS
from tests.architectures import build

FLIPS = [(), (-1,), (-2,), (-2, -1)]


def grid(method: str) -> dict:
    """A coarse occlusion grid (fast tests); the other methods take no options."""
    return {"options": ng.OcclusionOptions(8, 8)} if method == "occlusion" else {}


def manual_tta(model, image: torch.Tensor, method: str, target: int) -> np.ndarray:
    maps = []
    for dims in FLIPS:
        flipped = image.flip(dims) if dims else image
        cam = torch.from_numpy(
            ng.explain(model, flipped, method=method, target=target, **grid(method)).cam
        )
        maps.append((cam.flip(dims) if dims else cam).numpy())
    return np.mean(maps, axis=0)


CONVNET_METHODS = sorted(name for name, m in METHODS.items() if "attention" not in m.needs)


@pytest.mark.parametrize("method", CONVNET_METHODS)
def test_tta_equals_a_loop_over_flips(method: str) -> None:
    model = build("resnet").double()
    image = torch.randn(
        1, 3, 32, 32, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )
    result = ng.explain(model, image, method=method, tta=True, **grid(method))
    plain = ng.explain(model, image, method=method, **grid(method))
    expected = manual_tta(model, image, method, int(plain.targets[0]))
    assert expected.max() > 0
    np.testing.assert_allclose(result.cam, expected, rtol=1e-5, atol=1e-7 * expected.max())
    assert result.targets.tolist() == plain.targets.tolist()
    np.testing.assert_allclose(result.scores, plain.scores, rtol=1e-9)
    assert result.cam.shape == plain.cam.shape and result.stride == plain.stride
    assert result.tta and not plain.tta
    np.testing.assert_allclose(result.logits, plain.logits, rtol=1e-9)  # the image's own logits


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "occlusion"])
def test_tta_map_flips_with_the_image(method: str) -> None:
    # For any model, averaging over the flip group makes the map follow a flip of the image.
    model = build("branchy").double()
    image = torch.randn(
        2, 3, 40, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    kwargs = {"method": method, "target": [1, 3], "tta": True, **grid(method)}
    original = ng.explain(model, image, **kwargs).cam
    mirrored = ng.explain(model, image.flip(-1), **kwargs).cam
    assert original.max() > 0
    np.testing.assert_allclose(mirrored, original[..., ::-1], rtol=1e-6, atol=1e-12)
    symmetric = image + image.flip(-1)
    cam = ng.explain(model, symmetric, **kwargs).cam
    np.testing.assert_allclose(cam, cam[..., ::-1], rtol=1e-6, atol=1e-12)
    assert not np.allclose(
        ng.explain(model, symmetric, method=method, target=[1, 3], **grid(method)).cam, cam
    )
