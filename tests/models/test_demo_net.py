from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.demo_net import DEFAULT_LAYER, DemoNet, build_demo_net
from napari_gradcam.training.common import accuracies, augment, epoch_order, to_tensor
from napari_gradcam.training.stain_labels import CLASSES
from napari_gradcam.training.train_demo import COMMAND

DEMO_DIR = Path(__file__).resolve().parents[2] / "napari_gradcam" / "models" / "demo"


@pytest.mark.parametrize("shape", [(32, 32), (96, 96), (77, 131)])
def test_any_input_of_at_least_32_px(shape: tuple[int, int]) -> None:
    net = build_demo_net(n_classes=5).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, *shape)).shape == (2, 5)


def test_default_layer_is_last_relu_with_stride_8() -> None:
    net = build_demo_net()
    modules = dict(net.named_modules())
    relus = [name for name, m in net.features.named_children() if isinstance(m, nn.ReLU)]
    assert f"features.{relus[-1]}" == DEFAULT_LAYER
    assert isinstance(modules[DEFAULT_LAYER], nn.ReLU)
    with torch.no_grad():
        assert net.features(torch.zeros(1, 3, 96, 64)).shape == (1, 64, 12, 8)


def test_committed_weights_load_safely() -> None:
    path = DEMO_DIR / "demo_net.pt"
    assert path.stat().st_size < 1_000_000
    state = torch.load(path, weights_only=True)
    net = DemoNet(n_classes=len(CLASSES))
    net.load_state_dict(state, strict=True)


def test_committed_card_describes_the_model() -> None:
    card = ModelCard.from_json(DEMO_DIR / "demo_net.json")
    assert card.classes == CLASSES
    assert card.input_size == (96, 96) and card.in_channels == 3
    assert card.default_layer == DEFAULT_LAYER
    assert card.mpp == pytest.approx(0.499)
    assert all(0 < m < 1 for m in card.mean) and all(0 < s < 1 for s in card.std)
    extra = card.extra
    assert extra["held_out_accuracy"] >= 0.85
    assert extra["held_out_balanced_accuracy"] >= 0.85
    assert extra["held_out_region"] == f"x >= {extra['held_out_x']}"
    assert extra["tile_size"] == 96 and extra["training"] == COMMAND


def test_to_tensor_normalises_per_channel() -> None:
    tiles = np.full((2, 4, 4, 3), (255, 0, 51), dtype=np.uint8)
    x = to_tensor(tiles, np.array([0.5, 0.0, 0.2]), np.array([0.5, 1.0, 0.1]))
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [1.0, 0.0, 0.0], atol=1e-6)


def test_augment_applies_a_dihedral_transform_per_tile() -> None:
    x = torch.arange(16 * 2 * 5 * 5, dtype=torch.float32).reshape(16, 2, 5, 5)
    out = augment(x, torch.Generator().manual_seed(0))
    for original, moved in zip(x, out, strict=True):
        variants = [torch.rot90(original, k, dims=(1, 2)) for k in range(4)]
        variants += [torch.flip(v, dims=(2,)) for v in variants]
        assert any(torch.equal(moved, v) for v in variants)


def test_epoch_order_caps_background_and_keeps_every_tissue_tile() -> None:
    y = torch.tensor([0] * 50 + [1] * 8 + [2] * 5)
    order = epoch_order(y, torch.Generator().manual_seed(0))
    assert torch.bincount(y[order]).tolist() == [8, 8, 5]
    assert len(set(order.tolist())) == len(order)


def test_accuracies() -> None:
    scores = accuracies(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    assert scores["accuracy"] == 0.75
    assert scores["recall_nuclei-dense"] == 0.5
    assert scores["balanced_accuracy"] == pytest.approx(2.5 / 3)
