"""Real segmentation_models_pytorch architectures (random weights, never downloaded).

Grad-CAM of an output region equals pytorch-grad-cam's Grad-CAM with its
``SemanticSegmentationTarget`` at the same layer, directly and through ``load_model("smp:...")``.
Run with the env that has smp: ``.venv-timm/bin/python -m pytest -m timm tests/core/explain``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import napari_gradcam as ng
from tests.grad_cam_reference import reference_gradcam

pytestmark = pytest.mark.timm
smp = pytest.importorskip("segmentation_models_pytorch", reason="smp is not installed here")
model_targets = pytest.importorskip(
    "pytorch_grad_cam.utils.model_targets", reason="pytorch-grad-cam is not installed"
)

SIZE = 128
CLASSES = ("background", "nuclei", "stroma")
NUCLEI = 1


def build(architecture: str) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(smp, architecture)(encoder_name="resnet18", encoder_weights=None, classes=3)
    return model.eval()


def image() -> torch.Tensor:
    return torch.randn((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(1))


def region() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[24:72, 40:104] = True
    return mask


def region_gradcam(model: nn.Module, x: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's Grad-CAM of the nuclei logits summed in ``mask``, at ``decoder``."""
    target = model_targets.SemanticSegmentationTarget(NUCLEI, mask.astype(np.float32))
    return reference_gradcam(model, x, "decoder", None, lambda out: sum(map(target, out)))[0]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize(("architecture", "grid"), [("Unet", 128), ("FPN", 32)])
def test_region_gradcam_matches_pytorch_grad_cam(architecture: str, grid: int) -> None:
    model, x, mask = build(architecture), image(), region()
    card = ng.ModelCard(classes=CLASSES, output="dense")
    target = ng.OutputRegion("nuclei", mask)
    explanation = ng.explain(model, x, layer="decoder", target=target, card=card)
    expected = region_gradcam(model, x, mask)
    assert explanation.cam.shape == (1, grid, grid) and expected.shape == (grid, grid)
    assert correlation(explanation.cam[0], expected) >= 0.99


def test_a_loaded_smp_model_explains_its_decoder(tmp_path: Path) -> None:
    model, x, mask = build("DeepLabV3Plus"), image(), region()
    torch.save(model.state_dict(), tmp_path / "deeplab.pt")
    card = {"classes": list(CLASSES), "kwargs": {"encoder_name": "resnet18"}}
    (tmp_path / "deeplab.json").write_text(json.dumps(card))
    loaded = ng.load_model("smp:DeepLabV3Plus", weights=tmp_path / "deeplab.pt", device="cpu")
    assert (loaded.card.output, loaded.card.default_layer) == ("dense", "decoder")
    explanation = ng.explain(loaded, x, target=ng.OutputRegion("nuclei", mask))
    assert explanation.layer == "decoder"
    assert correlation(explanation.cam[0], region_gradcam(model, x, mask)) >= 0.99
