"""Every wrong image, layer or target gets a ValueError that says what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import napari_gradcam as ng
from tests.architectures import build


@pytest.fixture
def model() -> nn.Module:
    return build("resnet")


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 40, 3), np.uint8), "empty"),
        (np.full((40, 40, 3), 7, np.uint8), "constant"),
        (np.full((40, 40), np.nan, np.float32), "NaN"),
        (np.zeros((3, 40, 40, 2)), "2-D image"),
        (
            np.zeros((16, 16, 3), np.uint8) + np.arange(16, dtype=np.uint8)[:, None, None],
            "at least",
        ),
        (np.random.default_rng(0).random((40, 40, 5)), "5 channels"),
        (np.random.default_rng(0).random((3, 40, 40)), "channels-first"),
        (np.array([["a"] * 40] * 40), "not an image"),
    ],
)
def test_bad_images(model, small_card, image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ng.explain(model, image, card=small_card)


def test_nan_in_part_of_the_image(model, small_card) -> None:
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    image[3, 4] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        ng.explain(model, image, card=small_card)


def test_bad_tensors(model) -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ng.explain(model, torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="floating point"):
        ng.explain(model, torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        ng.explain(model, torch.full((1, 3, 32, 32), float("nan")))


def test_unknown_layer_lists_close_matches(model) -> None:
    with pytest.raises(ValueError, match=r"no layer named 'layer_3'.*closest: layer3"):
        ng.explain(model, torch.randn(1, 3, 32, 32), layer="layer_3")


def test_layer_module_not_in_model(model) -> None:
    with pytest.raises(ValueError, match="not a submodule"):
        ng.explain(model, torch.randn(1, 3, 32, 32), layer=nn.Conv2d(3, 3, 1))


def test_layer_without_spatial_output(model) -> None:
    with pytest.raises(ValueError, match="not a spatial"):
        ng.explain(model, torch.randn(1, 3, 32, 32), layer="fc")


def test_model_without_spatial_layers() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with pytest.raises(ValueError, match="no layer with a spatial"):
        ng.explain(mlp, torch.randn(1, 3, 8, 8))


def test_layer_off_the_path_to_the_output() -> None:
    class WithProbe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3, padding=1)
            self.probe = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.probe(x)
            return self.fc(self.body(x).mean(dim=(2, 3)))

    with pytest.raises(ValueError, match="does not depend on layer 'probe'"):
        ng.explain(WithProbe(), torch.randn(1, 3, 8, 8), layer="probe")


def test_shared_module_called_twice() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(self.conv(x)).mean(dim=(2, 3)))

    with pytest.raises(ValueError, match="more than once"):
        ng.explain(Twice(), torch.randn(1, 3, 8, 8), layer="conv")


@pytest.mark.parametrize("target", [5, -1, [0, 9]])
def test_target_out_of_range(model, target) -> None:
    batch = torch.randn(1 if isinstance(target, int) else 2, 3, 32, 32)
    with pytest.raises(ValueError, match="out of range"):
        ng.explain(model, batch, target=target)


def test_wrong_number_of_targets(model) -> None:
    with pytest.raises(ValueError, match="3 targets given for a batch of 2"):
        ng.explain(model, torch.randn(2, 3, 32, 32), target=[0, 1, 2])


def test_unknown_class_name(model) -> None:
    card = ng.ModelCard(classes=("a", "b", "c", "d", "e"), input_size=(32, 32))
    with pytest.raises(ValueError, match=r"unknown class 'tumor'.*a, b, c"):
        ng.explain(model, torch.randn(1, 3, 32, 32), target="tumor", card=card)


def test_unknown_method(model) -> None:
    with pytest.raises(ValueError, match=r"unknown method 'gradcam\+'.*gradcam"):
        ng.explain(model, torch.randn(1, 3, 32, 32), method="gradcam+")


def test_model_output_not_logits() -> None:
    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    with pytest.raises(ValueError, match="expected logits"):
        ng.explain(Segmenter(), torch.randn(1, 3, 8, 8), layer="conv")


def test_not_a_model() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        ng.explain("resnet", torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize(
    ("keyword", "hint"),
    [
        ("occlusion_window", "OcclusionOptions"),
        ("progress", "Monitor"),
        ("discard_ratio", "options="),
    ],
)
def test_a_keyword_explain_no_longer_takes_names_where_it_went(model, small_card, keyword, hint):
    image = np.random.default_rng(0).random((40, 40, 3))
    with pytest.raises(TypeError, match=f"takes no keyword {keyword}.*{hint}"):
        ng.explain(model, image, card=small_card, **{keyword: 1})
