"""How a heatmap's target and its score are said in the docks: "p=0.87", "similarity 0.31".

A class target has a probability; a prompt or a reference region has a similarity (the
explanation's probability is NaN then); a dense output region has a summed logit. No napari here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.targets import (
    SIMILARITY_KINDS,
    Target,
    describe_target,
)


def target_in_words(target: Target, classes: Sequence[str] = ()) -> str:
    """``target`` in words (``describe_target``), classes by index named after ``classes``."""
    return describe_target(target, ModelCard(classes=tuple(classes)))


def names_a_class(target: Target) -> bool:
    """Whether ``target`` is a plain class (index, name, one per image, or None: the top one)."""
    return target is None or isinstance(target, (int, str, tuple))


def is_similarity(target: Target) -> bool:
    """Whether the map explains a similarity (to a prompt, or to a reference region)."""
    return isinstance(target, SIMILARITY_KINDS)


def score_name(target: Target) -> str:
    """What the number next to the target is: ``"p"``, ``"similarity"`` or ``"score"``."""
    if is_similarity(target):
        return "similarity"
    return "p" if names_a_class(target) else "score"


def score_text(target: Target, score: float | None, probability: float | None) -> str:
    """``"p=0.87"`` where a probability is known, else ``"similarity 0.31"`` or ``"score 4.2"``.

    Examples
    --------
    >>> from napari_gradcam.core.targets import Prompt
    >>> score_text("tumour", 2.1, 0.871), score_text(Prompt(("nuclei",)), 0.314, math.nan)
    ('p=0.87', 'similarity 0.31')
    """
    if probability is not None and math.isfinite(probability) and not is_similarity(target):
        return f"p={probability:.2f}"
    if score is None or not math.isfinite(score):
        return ""
    return f"similarity {score:.2f}" if is_similarity(target) else f"score {score:.3g}"
