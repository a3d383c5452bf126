"""Shared fixtures: tiny models built here, images, and a model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.core.card import ModelCard


@pytest.fixture(autouse=True)
def user_state_folder(tmp_path_factory, monkeypatch):
    """The per-user state folder (error log, trusted code) is a fresh folder, never the home."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(folder))
    return folder


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def rgb_image(rng: np.random.Generator) -> np.ndarray:
    """A textured 96 x 80 RGB uint8 image."""
    return rng.integers(0, 256, size=(96, 80, 3), dtype=np.uint8)


@pytest.fixture
def small_card() -> ModelCard:
    """A card for the tiny test models: small input size, simple normalisation."""
    return ModelCard(name="tiny", input_size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="session")
def he_evidence():
    """Stain-derived evidence masks and 96 px tile grid (stride 48) of the bundled H&E slide."""
    from napari_gradcam.data import read_he_region
    from napari_gradcam.training.stain_labels import slide_evidence

    return slide_evidence(read_he_region(), tile_size=96, stride=48)


GUI_FIXTURES = frozenset({"qtbot", "qapp", "make_napari_viewer", "make_napari_viewer_proxy"})
NAPARI_TESTS = Path(__file__).parent / "_napari"


def pytest_collection_modifyitems(config, items):
    """Mark ``gui`` every test that needs Qt: those under tests/_napari and any using its fixtures.

    Test files need no mark of their own; ``make test-fast`` deselects them with ``-m "not gui"``.
    """
    for item in items:
        if item.path.is_relative_to(NAPARI_TESTS) or GUI_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.gui)


def pytest_ignore_collect(collection_path, config):
    """With ``-m timm`` (in .venv-timm, without napari), skip importing files with no timm test."""
    if config.getoption("markexpr") != "timm" or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    return "pytest.mark.timm" not in collection_path.read_text()
