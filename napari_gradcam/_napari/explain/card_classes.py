"""The classes of a model read from its card (JSON) alone: no torch, no weights, no code run.

The dock lists a model's classes as soon as it is chosen. The card is found where
``models.loading.load_model`` looks for it: the bundled card, a recipe, or a JSON beside the
weights or the model file. A model without a card shows its classes once it is loaded.
"""

from __future__ import annotations

from pathlib import Path

import napari_gradcam
from napari_gradcam.core.card import ModelCard

DEMO_DIR = Path(napari_gradcam.__file__).parent / "models" / "demo"
BUNDLED_CARDS = {"demo": "demo_net", "demo-vit": "vit_demo_net"}
"""Bundled model -> the stem of its card in ``DEMO_DIR`` (as ``models.loading.BUNDLED``)."""


def card_path(spec: str, weights: str | None) -> Path | None:
    """Where the model's card is, or ``None`` when it has none to read before loading."""
    if spec in BUNDLED_CARDS:
        return DEMO_DIR / f"{BUNDLED_CARDS[spec]}.json"
    if spec.endswith(".json"):
        return None  # a recipe: its card is inside, read when the recipe is loaded
    source = weights
    if source is None and ":" not in Path(spec).name:
        source = spec  # a TorchScript file: its card lies beside it
    if source is None:
        return None
    beside = Path(source).with_suffix(".json")
    return beside if beside.is_file() else None


def card_classes(spec: str, weights: str | None) -> tuple[str, ...]:
    """The class names on the model's card; empty when there is no card (or no classes).

    Raises
    ------
    ValueError
        When the card exists but is not a valid model card.
    """
    path = card_path(spec, weights)
    if path is None:
        return ()
    return tuple(ModelCard.from_json(path).classes)
