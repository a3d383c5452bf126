from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.core.card import ModelCard

TINY_SPEC = f"{Path(__file__).with_name('tiny_models.py')}:factory"


@pytest.fixture(autouse=True)
def autosave_folder(tmp_path, monkeypatch) -> Path:
    """Autosaves of the annotations dock go to a fresh folder per test, never the home."""
    folder = tmp_path / "autosave"
    monkeypatch.setenv("NAPARI_GRADCAM_AUTOSAVE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_spec() -> str:
    """Model spec of the tiny test model."""
    return TINY_SPEC


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    """Weights of the tiny model with its card beside them (16 x 16 input, 1 µm/px)."""
    import torch

    from .tiny_models import CLASSES, factory

    folder = tmp_path_factory.mktemp("tiny")
    torch.save(factory().state_dict(), folder / "tiny.pt")
    card = ModelCard(name="tiny", classes=CLASSES, input_size=(16, 16), mpp=1.0)
    card.to_json(folder / "tiny.json")
    return str(folder / "tiny.pt")


@pytest.fixture
def tile() -> np.ndarray:
    """A 64 x 96 uint8 RGB image with structure (not constant)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)


@pytest.fixture
def make_gradcam_widget(make_napari_viewer, tiny_spec, tiny_weights):
    """Factory: a viewer with the given images and a docked widget set to the tiny model."""
    from napari_gradcam._napari.explain.widget import GradCamWidget

    def make(*images: np.ndarray, tiled: bool = True, **layer_kwargs) -> tuple:
        viewer = make_napari_viewer()
        for data in images:
            viewer.add_image(data, **layer_kwargs)
        widget = GradCamWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Grad-CAM")
        widget.model_spec = tiny_spec
        widget.weights.value = tiny_weights
        widget.tiles.tiled.value = tiled
        return viewer, widget

    return make
