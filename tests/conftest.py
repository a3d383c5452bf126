"""Shared fixtures: tiny models built here, images, and a model card."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gradcam.models.card import ModelCard


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
