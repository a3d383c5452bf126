"""The classes of a model read from its card (JSON) alone: no torch, no weights, no code run.

The dock lists a model's classes as soon as it is chosen. The card is found where
``models.loading.load_model`` looks for it: the bundled card, a recipe, or a JSON beside the
weights or the model file. A model without a card shows its classes once it is loaded.
"""

from __future__ import annotations

from pathlib import Path

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.bundled import BUNDLED, bundled_card


def card_path(spec: str, weights: str | None) -> Path | None:
    """Where the model's card is, or ``None`` when it has none to read before loading."""
    if spec in BUNDLED:
        return bundled_card(spec)
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
