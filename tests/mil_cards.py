"""Slide-model cards over the demo encoder with an untrained ABMIL, written for tests."""

from __future__ import annotations

import json
from pathlib import Path

from napari_gradcam.models.bundled import DEMO_DIR

DEMO_ENCODER = {
    "spec": "napari_gradcam.models.demo_encoder:build_demo_encoder",
    "weights": str(DEMO_DIR / "demo_net.pt"),
    "card": str(DEMO_DIR / "demo_net.json"),
}
"""The CNN demo's features as a 64-wide tile encoder."""


def write_card(path: Path, **changes: object) -> Path:
    """Write a card (64 px tiles at 0.5 µm/px, classes neg/pos) with ``changes`` to ``path``."""
    data = {
        "classes": ["neg", "pos"],
        "tile_size": 64,
        "mpp": 0.5,
        "encoder": dict(DEMO_ENCODER),
        "aggregator": {
            "spec": "napari_gradcam.core.mil.aggregators:build_attention_mil",
            "kwargs": {"in_dim": 64, "n_classes": 2},
            "attention_module": "attention",
        },
    }
    data.update(changes)
    path.write_text(json.dumps(data))
    return path
