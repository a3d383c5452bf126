"""The bundled demo models: their factories and where their weights and cards lie (no torch).

The Explain dock lists these and reads their cards before torch is imported; the loader
builds them.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).parent / "demo"
BUNDLED: dict[str, tuple[str, str]] = {
    "demo": ("napari_gradcam.models.demo_net:build_demo_net", "demo_net"),
    "demo-vit": ("napari_gradcam.models.vit_demo_net:build_vit_demo_net", "vit_demo_net"),
    "demo-vlm": ("napari_gradcam.models.demo_vlm:build_demo_vlm", "demo_vlm"),
    "demo-segmenter": (
        "napari_gradcam.models.demo_segmenter:build_demo_segmenter",
        "demo_segmenter",
    ),
}
"""Bundled model name -> (factory spec, file stem of its weights and card in ``DEMO_DIR``)."""


def bundled_card(name: str) -> Path:
    """The card of the bundled model ``name``."""
    return DEMO_DIR / f"{BUNDLED[name][1]}.json"
