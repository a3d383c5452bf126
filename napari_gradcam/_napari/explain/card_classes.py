"""The classes of a model read from its card (JSON) alone: no torch, no weights, no code run.

The dock lists a model's classes as soon as it is chosen, from the card the loader would read
(``models.specs.card_location``). A recipe's card, and a model without a card file, show their
classes once the model is loaded.
"""

from __future__ import annotations

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.specs import card_location


def card_classes(spec: str, weights: str | None) -> tuple[str, ...]:
    """The class names on the model's card; empty when there is no card (or no classes).

    Raises
    ------
    ValueError
        When the card exists but is not a valid model card.
    """
    path = card_location(spec, weights)
    if path is None or not path.is_file():
        return ()
    return tuple(ModelCard.from_json(path).classes)
