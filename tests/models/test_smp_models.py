"""``smp:NAME`` specs: built from the card's kwargs, never downloading; refusals say what to do.

segmentation-models-pytorch is stood in for by a fake module here (the real one, which needs
torchvision, is checked in ``tests/core/explain/test_smp_segmentation.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models import smp_models
from napari_gradcam.models.loading import load_model
from napari_gradcam.models.sources import model_sources
from napari_gradcam.models.specs import card_location


class SegmentationModel(nn.Module):
    """smp's base class of its architectures."""


class Unet(SegmentationModel):
    """Takes smp's arguments, records them; its decoder and head make (N, classes, H, W)."""

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_weights: str | None = "imagenet",
        in_channels: int = 3,
        classes: int = 1,
        activation: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__()
        self.built_with = {
            "encoder_name": encoder_name,
            "encoder_weights": encoder_weights,
            "in_channels": in_channels,
            "classes": classes,
            **kwargs,
        }
        self.decoder = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.segmentation_head = nn.Conv2d(4, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decoder(x))


@pytest.fixture
def fake_smp(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(base=SimpleNamespace(SegmentationModel=SegmentationModel), Unet=Unet)
    monkeypatch.setattr(smp_models, "_import_smp", lambda: fake)


def write_card(folder: Path, **fields: object) -> Path:
    path = folder / "card.json"
    path.write_text(json.dumps(fields))
    return path


@pytest.mark.usefixtures("fake_smp")
def test_the_card_builds_the_architecture_without_downloading(tmp_path: Path) -> None:
    card = write_card(
        tmp_path, classes=["background", "tumour", "stroma"], kwargs={"encoder_name": "resnet18"}
    )
    module = build_from(card)
    assert module.built_with == {
        "encoder_name": "resnet18",
        "encoder_weights": None,
        "in_channels": 3,
        "classes": 3,
    }


def build_from(card: Path) -> nn.Module:
    return smp_models.build_smp("Unet", ModelCard.from_json(card))


@pytest.mark.usefixtures("fake_smp")
def test_a_single_logit_map_takes_two_class_names(tmp_path: Path) -> None:
    card = write_card(tmp_path, classes=["background", "nuclei"], kwargs={"classes": 1})
    assert build_from(card).built_with["classes"] == 1


@pytest.mark.usefixtures("fake_smp")
def test_a_timm_encoder_takes_its_own_arguments(tmp_path: Path) -> None:
    card = write_card(tmp_path, kwargs={"encoder_name": "tu-resnet18", "output_stride": 16})
    assert build_from(card).built_with["output_stride"] == 16


@pytest.mark.usefixtures("fake_smp")
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"kwargs": {"encoder_weights": "imagenet"}},
            r"\['encoder_weights'\] would download or read weights",
        ),
        (
            {"kwargs": {"encoder_name": "tu-resnet18", "checkpoint_path": "evil.pth"}},
            r"\['checkpoint_path'\] would download or read weights",
        ),
        ({"kwargs": {"activation": "sigmoid"}}, "turns the logits into probabilities"),
        (
            {"kwargs": {"encoder_depht": 4}},
            r"Unet takes no argument\(s\) \['encoder_depht'\]; it takes \['encoder_name', 'in_",
        ),
        (
            {"in_channels": 1, "kwargs": {"in_channels": 3}},
            "'in_channels' 3 contradicts the card's 'in_channels' 1",
        ),
        (
            {"classes": ["a", "b", "c"], "kwargs": {"classes": 2}},
            "'classes' 2 contradicts the card's 3 class names",
        ),
    ],
)
def test_arguments_that_cannot_be_right_are_refused(
    tmp_path: Path, fields: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_from(write_card(tmp_path, **fields))


@pytest.mark.usefixtures("fake_smp")
def test_an_unknown_architecture_names_the_closest() -> None:
    with pytest.raises(ValueError, match="no architecture 'UNet'; closest: Unet"):
        smp_models.build_smp("UNet", ModelCard())


def test_without_the_package_the_message_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)
    with pytest.raises(ValueError, match="pip install segmentation-models-pytorch"):
        load_model("smp:Unet", device="cpu")


@pytest.mark.usefixtures("fake_smp")
def test_weights_load_from_a_file_with_the_card_beside_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = Unet(in_channels=3, classes=2)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    (tmp_path / "w.json").write_text(json.dumps({"classes": ["background", "tumour"]}))
    loaded = load_model("smp:Unet", weights=tmp_path / "w.pt", device="cpu")
    assert (loaded.card.output, loaded.card.default_layer) == ("dense", "decoder")
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[name], value, rtol=0, atol=0)


def test_an_smp_spec_is_built_from_its_package_and_has_no_model_file(tmp_path: Path) -> None:
    assert card_location("smp:Unet") is None
    assert card_location("smp:Unet", tmp_path / "w.pt") == tmp_path / "w.json"
    assert model_sources("smp:Unet").packages == ("segmentation_models_pytorch",)


def test_a_factory_is_built_with_the_card_s_kwargs() -> None:
    card = ModelCard(kwargs={"in_channels": 3, "out_channels": 5, "kernel_size": 1})
    assert load_model("torch.nn:Conv2d", card=card, device="cpu").module.out_channels == 5


def test_kwargs_on_the_card_of_a_saved_model_are_refused(tmp_path: Path) -> None:
    torch.jit.save(torch.jit.script(nn.Conv2d(3, 2, 1)), tmp_path / "m.pt")
    card = ModelCard(kwargs={"encoder_name": "resnet18"})
    with pytest.raises(ValueError, match="is not built from them"):
        load_model(str(tmp_path / "m.pt"), card=card, device="cpu")
