"""What a model spec names, where its model card lies, and its classes: read without torch.

The loader, the caches' list of a model's files and the Explain dock (which lists a model's
classes as soon as it is chosen, before torch is imported) find a model's card by the one rule
here.
"""

from __future__ import annotations

from pathlib import Path

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.bundled import BUNDLED, bundled_card
from napari_gradcam.models.smp_models import is_smp_spec
from napari_gradcam.models.timm_models import is_timm_spec

OPEN_CLIP_PREFIX = "open_clip:"
"""The spec prefix of an open_clip architecture (``open_clip:ViT-B-32``)."""
HUGGING_FACE_PREFIX = "hf:"
"""The spec prefix of a Hugging Face vision-language model folder (``hf:path/to/plip``)."""


def is_open_clip_spec(spec: str) -> bool:
    """Whether ``spec`` names an open_clip architecture (``open_clip:ARCH``)."""
    return spec.startswith(OPEN_CLIP_PREFIX) and len(spec) > len(OPEN_CLIP_PREFIX)


def is_hugging_face_spec(spec: str) -> bool:
    """Whether ``spec`` names a Hugging Face model config (``hf:FOLDER``)."""
    return spec.startswith(HUGGING_FACE_PREFIX) and len(spec) > len(HUGGING_FACE_PREFIX)


def is_vision_language_spec(spec: str) -> bool:
    """Whether ``spec`` names a vision-language model (``open_clip:ARCH`` or ``hf:FOLDER``)."""
    return is_open_clip_spec(spec) or is_hugging_face_spec(spec)


def is_factory_spec(spec: str) -> bool:
    """Whether ``spec`` is ``target:factory`` (and not a file whose name holds a colon)."""
    head, sep, tail = spec.rpartition(":")
    return bool(sep and head and tail.isidentifier() and not Path(spec).exists())


def card_location(
    spec: str, weights: str | Path | None = None, card: str | Path | None = None
) -> Path | None:
    """Where the model card of ``spec`` is, or ``None`` when it has no card file.

    The ``card`` given; else the ``.json`` beside the weights, or beside the model file of a
    TorchScript spec, whether or not it exists yet (a card that appears later changes the
    model); but a bundled model whose weights have no card beside them keeps its own card.
    ``None`` for a recipe (its card is inside) and for a factory, ``timm:``, ``smp:``,
    ``open_clip:`` or ``hf:`` spec without weights.
    """
    if card is not None:
        return Path(card).expanduser()
    if spec.endswith(".json"):
        return None
    built = (
        is_timm_spec(spec)
        or is_smp_spec(spec)
        or is_vision_language_spec(spec)
        or is_factory_spec(spec)
    )
    model_file = None if spec in BUNDLED or built else spec
    beside = weights if weights is not None else model_file
    if beside is not None:
        path = Path(beside).expanduser().with_suffix(".json")
        if spec not in BUNDLED or path.is_file():
            return path
    return bundled_card(spec) if spec in BUNDLED else None


def card_classes(spec: str, weights: str | None) -> tuple[str, ...]:
    """The class names on the model's card file; empty when it has none (or names none).

    A recipe's card, and a model without a card file, show their classes once loaded.

    Raises
    ------
    ValueError
        When the card exists but is not a valid model card.
    """
    path = card_location(spec, weights)
    if path is None or not path.is_file():
        return ()
    return ModelCard.from_json(path).classes
