"""What real Hugging Face models do that a hand-made module must mimic (runs without them).

One ``config`` object is handed to the model and to its parts (embeddings, encoder), and a
classifier returns an output object with a ``logits`` tensor. The real models are tested in
``test_hf_layouts.py`` (timm env, with transformers).
"""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core.explain.model_layers import TokenFacts, declared_facts, vit_facts
from tests.transformers import TinyViT


class Embeddings(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        self.config = config  # as Hugging Face's parts keep it
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.register_tokens = nn.Parameter(torch.zeros(1, 4, 8))


def test_a_config_shared_with_the_parts_declares_once_with_the_registers() -> None:
    config = SimpleNamespace(patch_size=14, num_register_tokens=4)
    model = nn.Module()
    model.config = config
    model.embeddings = Embeddings(config)
    model.encoder = nn.Module()
    model.encoder.config = config
    model.encoder.layer = nn.ModuleList([nn.LayerNorm(8)])
    assert list(declared_facts(model)) == [""]
    assert vit_facts(model, "encoder.layer.0") == TokenFacts((14, 14), 5)


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    hidden_states: tuple = ()


class ReturnsOutput(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.patch_embed, self.num_prefix_tokens = model.patch_embed, model.num_prefix_tokens

    def forward(self, x: torch.Tensor) -> ClassifierOutput:
        return ClassifierOutput(self.model(x))


def test_an_output_with_logits_is_explained_like_the_logits() -> None:
    torch.manual_seed(0)
    plain = TinyViT().eval()
    x = torch.randn(2, 3, 32, 32)
    wrapped = ReturnsOutput(plain)
    ours = ng.explain(wrapped, x, layer="model.blocks.1.norm1")
    expected = ng.explain(plain, x, layer="blocks.1.norm1")
    np.testing.assert_allclose(ours.cam, expected.cam, rtol=1e-6)
    np.testing.assert_array_equal(ours.targets, expected.targets)
