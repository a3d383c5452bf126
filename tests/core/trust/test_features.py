import numpy as np
import pytest
import torch

from napari_gradcam.core.explain.hooks import capture_layer
from napari_gradcam.core.explain.preprocess import to_batch
from napari_gradcam.core.trust.features import feature_stack, layer_sweep, sweep_layers
from tests.core.he_tiles import demo_model, he_tile


def test_channels_are_ordered_by_their_share_of_the_logit() -> None:
    demo = demo_model()
    tile = he_tile("dense")
    stack = feature_stack(demo, tile, target="nuclei-dense", origin=(8, 16))
    batch = to_batch(tile, demo.card, torch.device("cpu"))
    layer, check = demo.module.features[14], demo.layers.layout_check("features.14", batch)
    with torch.no_grad(), capture_layer(layer, "f", check, with_grad=False) as cap:
        logits = demo.module(batch)
    raw = cap.activation[0].numpy()
    weights = demo.module.classifier.weight[2].detach().numpy()
    share = weights * raw.mean(axis=(1, 2))
    assert stack.layer == "features.14" and stack.target_name == "nuclei-dense"
    np.testing.assert_array_equal(stack.channels, np.argsort(-share, kind="stable"))
    np.testing.assert_allclose(stack.contributions, share[stack.channels], rtol=1e-4, atol=1e-6)
    assert np.all(np.diff(stack.contributions) <= 0)
    np.testing.assert_allclose(stack.activations, raw[stack.channels])
    bias = float(demo.module.classifier.bias[2].detach())
    assert stack.contributions.sum() + bias == pytest.approx(float(logits[0, 2]), rel=1e-4)
    top = stack.top(2)
    assert [c for c, _ in top] == stack.channels[:2].tolist()
    assert [s for _, s in top] == pytest.approx(stack.contributions[:2].tolist())
    assert stack.stride == (8.0, 8.0) and stack.origin == (8.0, 16.0)


def test_a_layer_without_spatial_output_is_refused() -> None:
    with pytest.raises(ValueError, match="spatial"):
        feature_stack(demo_model(), he_tile("dense"), layer="classifier")


def test_sweep_takes_the_deepest_layer_per_resolution_with_one_target() -> None:
    demo = demo_model()
    layers = sweep_layers(demo)
    assert layers == ["features.2", "features.6", "features.10", "features"]
    assert sweep_layers(demo, count=2) == layers[-2:]
    maps = list(layer_sweep(demo, he_tile("dense_edge"), layers[1:], origin=(4, 4)))
    assert [m.stride for m in maps] == [(2.0, 2.0), (4.0, 4.0), (8.0, 8.0)]
    assert len({int(m.targets[0]) for m in maps}) == 1
    assert all(m.origin == (4.0, 4.0) for m in maps)
