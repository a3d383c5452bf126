"""The bundled ViT demo: timm's layout, attention against a slow reference, weights and card."""

from pathlib import Path

import pytest
import torch
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.vit_demo_net import DEFAULT_LAYER, VitDemoNet, build_vit_demo_net
from napari_gradcam.training.stain_labels import CLASSES
from napari_gradcam.training.train_vit_demo import COMMAND, VIT_CONFIG

DEMO_DIR = Path(__file__).resolve().parents[2] / "napari_gradcam" / "models" / "demo"


@pytest.fixture(scope="module")
def net() -> VitDemoNet:
    torch.manual_seed(0)
    return build_vit_demo_net().eval()


def test_declares_timm_token_layout(net: VitDemoNet) -> None:
    assert net.patch_embed.patch_size == (8, 8) and net.patch_embed.grid_size == (12, 12)
    assert isinstance(net.patch_embed.proj, nn.Conv2d)
    assert net.num_prefix_tokens == 1 and net.global_pool == "token"
    assert net.cls_token.shape == (1, 1, 96) and net.pos_embed.shape == (1, 1 + 144, 96)
    assert isinstance(net.blocks, nn.ModuleList)
    attn = net.blocks[-1].attn
    assert isinstance(attn.qkv, nn.Linear) and isinstance(attn.q_norm, nn.Identity)
    assert attn.scale == pytest.approx((96 // attn.num_heads) ** -0.5)
    assert isinstance(dict(net.named_modules())[DEFAULT_LAYER], nn.LayerNorm)
    assert f"blocks.{len(net.blocks) - 1}.norm1" == DEFAULT_LAYER


def test_default_layer_sees_class_and_patch_tokens(net: VitDemoNet) -> None:
    seen = []
    layer = dict(net.named_modules())[DEFAULT_LAYER]
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        net(torch.zeros(2, 3, 96, 64))
    handle.remove()
    assert seen == [(2, 1 + 12 * 8, 96)]


def _slow_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Multi-head attention written out: softmax(q k^T * scale) v per head, then proj."""
    dim = x.shape[-1]
    heads, width = attn.num_heads, dim // attn.num_heads
    q, k, v = attn.qkv(x).split(dim, dim=-1)
    outs = []
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        weights = torch.softmax(q[..., part] @ k[..., part].transpose(1, 2) * attn.scale, -1)
        outs.append(weights @ v[..., part])
    return attn.proj(torch.cat(outs, dim=-1))


def test_attention_matches_the_written_out_formula(net: VitDemoNet) -> None:
    x = torch.randn(2, 145, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for block in net.blocks:
            torch.testing.assert_close(block.attn(x), _slow_attention(block.attn, x))


@pytest.mark.parametrize("shape", [(96, 96), (48, 128), (200, 104)])
def test_other_sizes_resize_the_position_embedding(net: VitDemoNet, shape) -> None:
    with torch.no_grad():
        assert net(torch.zeros(2, 3, *shape)).shape == (2, 3)


def test_size_not_a_multiple_of_the_patch_is_refused(net: VitDemoNet) -> None:
    with pytest.raises(ValueError, match="multiple of the 8 px patch"):
        net(torch.zeros(1, 3, 96, 90))


def test_committed_weights_load_safely() -> None:
    path = DEMO_DIR / "vit_demo_net.pt"
    assert path.stat().st_size < 3_000_000
    state = torch.load(path, weights_only=True)
    VitDemoNet(n_classes=len(CLASSES)).load_state_dict(state, strict=True)


def test_committed_card_describes_the_model() -> None:
    card = ModelCard.from_json(DEMO_DIR / "vit_demo_net.json")
    cnn = ModelCard.from_json(DEMO_DIR / "demo_net.json")
    assert card.classes == CLASSES and card.input_size == (96, 96)
    assert card.default_layer == DEFAULT_LAYER and card.mpp == pytest.approx(0.499)
    assert (card.mean, card.std) == (cnn.mean, cnn.std)  # same training tiles
    assert "not a diagnostic model" in card.description
    extra = card.extra
    assert extra["training"] == COMMAND and extra["held_out_x"] == VIT_CONFIG.held_out_x
    assert extra["nuclei_fraction_cutoff"] == cnn.extra["nuclei_fraction_cutoff"]
    assert extra["held_out_balanced_accuracy"] >= 0.85


def test_load_model_demo_vit() -> None:
    loaded = ng.load_model("demo-vit", device="cpu")
    assert loaded.spec == "demo-vit" and isinstance(loaded.module, VitDemoNet)
    assert loaded.card.name == "demo H&E nuclei-density ViT" and not loaded.module.training
