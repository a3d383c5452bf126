"""NaN or infinite logits and maps are a clear error naming the cause; nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_gradcam import explain
from napari_gradcam.cli import main
from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.finite import NonFiniteError, check_finite
from napari_gradcam.core.explain.predict import predict

FACTORY = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    )
"""


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def poisoned(value: float = float("nan")) -> nn.Module:
    model = tiny()
    with torch.no_grad():
        model[4].weight[0, 0] = value
    return model


def pixels() -> np.ndarray:
    return np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)


def card_with_std(std: tuple[float, ...]) -> ModelCard:
    """A card whose std the card's own checks may refuse; forced in to test the runtime check."""
    card = ModelCard(input_size=(32, 32))
    object.__setattr__(card, "std", std)
    return card


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_named_with_their_layer(value: float) -> None:
    with pytest.raises(NonFiniteError, match=r"weights hold NaN/inf \(in 4\.weight\)"):
        explain(poisoned(value), pixels(), layer="0")


def test_a_nan_std_in_the_card_is_named() -> None:
    card = card_with_std((float("nan"), 0.2, 0.2))
    with pytest.raises(NonFiniteError, match=r"card's std .* is NaN, infinite or 0"):
        explain(tiny(), pixels(), layer="0", card=card)


def test_non_finite_input_pixels_are_refused_before_the_model_runs() -> None:
    image = pixels()
    image[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values; fill or crop them"):
        explain(tiny(), image, layer="0")


def test_non_finite_input_is_named_as_a_cause() -> None:
    batch = torch.zeros(1, 3, 8, 8)
    batch[0, 0, 0, 0] = torch.inf
    with pytest.raises(NonFiniteError, match="input pixels hold NaN/inf"):
        check_finite(torch.tensor([float("nan")]), "the logits", module=tiny(), batch=batch)


def test_predict_refuses_nan_logits_too() -> None:
    with pytest.raises(NonFiniteError, match="logits hold NaN"):
        predict(poisoned(), pixels())


def test_finite_results_pass_and_an_unexplained_nan_says_the_forward_overflows() -> None:
    assert np.isfinite(explain(tiny(), pixels(), layer="0").cam).all()
    with pytest.raises(NonFiniteError, match="forward overflows"):
        check_finite(torch.tensor([1.0, float("nan")]), "the map", module=tiny())


@pytest.fixture
def nan_model(tmp_path: Path) -> list[str]:
    """CLI arguments of a factory model whose weights hold a NaN."""
    factory = tmp_path / "net.py"
    factory.write_text(FACTORY)
    weights = tmp_path / "nan.pt"
    torch.save(poisoned().state_dict(), weights)
    return ["--model", f"{factory}:build", "--weights", str(weights)]


def test_the_cli_writes_nothing_for_nan_weights(
    nan_model: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "tile.npy"
    np.save(image, pixels())
    out = tmp_path / "out"
    assert main(["explain", str(image), *nan_model, "--out", str(out), "--layer", "0"]) == 1
    assert "weights hold NaN/inf" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_the_cli_writes_nothing_for_a_card_with_a_nan_std(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = tmp_path / "net.py"
    factory.write_text(FACTORY)
    card = tmp_path / "card.json"
    card.write_text('{"std": [NaN, 0.2, 0.2], "input_size": [32, 32]}')
    image = tmp_path / "tile.npy"
    np.save(image, pixels())
    out = tmp_path / "out"
    args = ["explain", str(image), "--model", f"{factory}:build", "--card", str(card)]
    assert main([*args, "--out", str(out), "--layer", "0"]) in (1, 2)
    assert "std" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_a_finite_run_writes_strict_json(tmp_path: Path) -> None:
    image = tmp_path / "tile.npy"
    np.save(image, pixels())
    factory = tmp_path / "net.py"
    factory.write_text(FACTORY)
    out = tmp_path / "out"
    args = ["explain", str(image), "--model", f"{factory}:build", "--layer", "0"]
    assert main([*args, "--out", str(out)]) == 0

    def refuse(name: str) -> None:
        raise AssertionError(f"bare {name} in the JSON output")

    record = json.loads((out / "tile.json").read_text(), parse_constant=refuse)
    assert 0.0 <= record["probability"] <= 1.0
