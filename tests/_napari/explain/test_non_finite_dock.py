"""A model that gives NaN is an error in the Explain dock that names the cause; no layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_gradcam._napari.explain import widget as widget_module
from napari_gradcam._napari.result_layers import METADATA_KEY
from napari_gradcam.core.card import ModelCard

from ..tiny_models import CLASSES, factory

TIMEOUT_MS = 30_000


@pytest.fixture
def nan_weights(tmp_path: Path) -> str:
    """The tiny model's weights with one NaN in its last layer, and its card beside them."""
    state = factory().state_dict()
    state["7.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    ModelCard(name="tiny", classes=CLASSES, input_size=(16, 16), mpp=1.0).to_json(
        tmp_path / "nan.json"
    )
    return str(tmp_path / "nan.pt")


@pytest.mark.parametrize("tiled", [False, True])
def test_nan_weights_show_the_cause_and_add_no_layer(
    make_gradcam_widget, tile, qtbot, monkeypatch, nan_weights: str, tiled: bool
) -> None:
    shown: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    viewer, widget = make_gradcam_widget(tile, tiled=tiled)
    widget.weights.value = nan_weights
    widget.explain_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert len(shown) == 1 and "weights hold NaN/inf (in 7.weight)" in shown[0]
    assert [layer for layer in viewer.layers if METADATA_KEY in layer.metadata] == []
    kept = [layer.name for layer in viewer.layers if not layer.name.endswith(" tissue")]
    assert kept == [viewer.layers[0].name]  # the image (and the tiled run's tissue mask) only
