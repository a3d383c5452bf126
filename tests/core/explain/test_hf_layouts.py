"""Real Hugging Face vision transformers (random weights from small configs, no download).

Layouts come from ``config.patch_size`` and the embeddings' class and register tokens;
Grad-CAM at the default layer is checked against pytorch-grad-cam given the right
``reshape_transform`` (written here). Run in the env that has timm and transformers:
``.venv-timm/bin/python -m pytest -m timm tests/core/explain/test_hf_layouts.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core.explain.model_layers import candidate_layouts, default_layer, vit_facts
from tests.grad_cam_reference import class_score, reference_gradcam, tokens_to_nchw

pytestmark = pytest.mark.timm
transformers = pytest.importorskip("transformers", reason="transformers is not installed here")
pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


class RegisterProbe(nn.Module):
    """A linear probe on the class token of a DINOv2-with-registers backbone (patch 14)."""

    def __init__(self, registers: int = 4, n_classes: int = 3) -> None:
        super().__init__()
        config = transformers.Dinov2WithRegistersConfig(
            **SMALL, mlp_ratio=2, image_size=56, patch_size=14, num_register_tokens=registers
        )
        self.backbone = transformers.Dinov2WithRegistersModel(config)
        self.head = nn.Linear(config.hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pixel_values=x).pooler_output)


class LogitsOnly(nn.Module):
    """pytorch-grad-cam needs a tensor output: the logits of an ``ImageClassifierOutput``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def hf_vit() -> nn.Module:
    config = transformers.ViTConfig(
        **SMALL, intermediate_size=64, image_size=48, patch_size=8, num_labels=3
    )
    return transformers.ViTForImageClassification(config)


CASES = [
    # (builder, input (H, W), prefix tokens, expected default layer, map grid)
    (hf_vit, (48, 48), 1, "vit.layers.1.layernorm_before", (6, 6)),
    (RegisterProbe, (56, 70), 5, "backbone.encoder.layer.1.norm1", (4, 5)),
]


@pytest.mark.parametrize(("build", "size", "prefix", "layer", "grid"), CASES)
def test_layout_default_layer_and_gradcam_match_pytorch_grad_cam(
    build, size, prefix, layer, grid
) -> None:
    torch.manual_seed(0)
    model = build().eval()
    facts = vit_facts(model, layer)
    assert facts is not None and facts.prefix_tokens == prefix
    layouts = candidate_layouts(model, (1, 3, *size))
    assert layouts[layer].kind == "tokens" and layouts[layer].grid == grid
    assert layouts[layer].prefix_tokens == prefix
    assert default_layer(model, (1, 3, *size)) == layer
    x = torch.randn(2, 3, *size)
    ours = ng.explain(model, x, target=[1, 2])
    assert ours.layer == layer and ours.cam.shape == (2, *grid)
    assert ours.stride == (float(facts.patch_size[0]),) * 2
    wrapped = LogitsOnly(model) if hasattr(model, "config") else model
    for index, target in enumerate((1, 2)):
        expected = reference_gradcam(
            wrapped,
            x[index : index + 1],
            f"model.{layer}" if wrapped is not model else layer,
            tokens_to_nchw(prefix, grid),
            class_score(target),
        )[0]
        assert np.ptp(expected) > 0
        corr = float(np.corrcoef(ours.cam[index].ravel(), expected.ravel())[0, 1])
        assert corr >= 0.99, f"{layer}: correlation {corr:.4f}"


def test_prefix_counts_the_class_token_and_every_register() -> None:
    torch.manual_seed(0)
    model = RegisterProbe(registers=2).eval()
    assert vit_facts(model, "backbone.encoder.layer.0.norm1").prefix_tokens == 3
    assert candidate_layouts(model, (1, 3, 56, 56))["backbone.layernorm"].prefix_tokens == 3
