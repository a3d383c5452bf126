"""Captions of the demo vision-language model, written from the stain-derived tile labels.

Each class of :data:`~napari_gradcam.training.stain_labels.CLASSES` has several phrasings, so
that the text tower learns words rather than one sentence per class; a few more phrasings,
recombining the same words, are kept out of training to check that prompts generalise.
"""

from __future__ import annotations

TRAINING_CAPTIONS: dict[str, tuple[str, ...]] = {
    "background": (
        "background glass",
        "empty slide",
        "blank glass",
        "white background",
        "no tissue",
        "empty glass slide",
    ),
    "stroma": (
        "stroma",
        "pink connective tissue",
        "fibrous stroma",
        "eosinophilic collagen",
        "loose connective tissue",
        "stromal tissue",
    ),
    "nuclei-dense": (
        "nuclei-dense tissue",
        "densely packed nuclei",
        "many nuclei",
        "crowded purple nuclei",
        "hypercellular tissue",
        "cellular region",
    ),
}
"""Class name -> the phrasings a tile of that class is captioned with in training."""

UNSEEN_CAPTIONS: dict[str, tuple[str, ...]] = {
    "background": ("blank empty slide", "white glass"),
    "stroma": ("pink fibrous collagen", "loose stromal tissue"),
    "nuclei-dense": ("dense purple nuclei", "crowded cellular tissue"),
}
"""Class name -> phrasings never seen in training, made of words that were."""

CLASS_PROMPTS: dict[str, str] = {
    "background": "background glass",
    "stroma": "stroma",
    "nuclei-dense": "nuclei-dense tissue",
}
"""Class name -> the one prompt that names it in the zero-shot scores."""
