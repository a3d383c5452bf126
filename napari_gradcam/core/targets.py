"""STAND-IN for the lead's core targets (issue #20), written to the agreed spec so the napari face
can be built before it lands; replaced by main's file at merge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:
    from napari_gradcam.core.card import ModelCard


def _name(target: int | str, card: ModelCard | None) -> str:
    return card.class_name(target) if card is not None and isinstance(target, int) else str(target)


@dataclass(frozen=True)
class Classes:
    """Several classes, their scores summed."""

    classes: tuple[int | str, ...]

    def describe(self, card: ModelCard | None = None) -> str:
        return " + ".join(_name(c, card) for c in self.classes)


@dataclass(frozen=True)
class Contrast:
    """``main`` against ``against`` (None: the nearest class), Finer-CAM."""

    main: int | str
    against: int | str | None = None
    alpha: float = 1.0

    def describe(self, card: ModelCard | None = None) -> str:
        other = "nearest class" if self.against is None else _name(self.against, card)
        return f"{_name(self.main, card)} vs {other}"


@dataclass(frozen=True)
class Prompt:
    """Similarity to the mean text embedding of ``texts``."""

    texts: tuple[str, ...]
    template: str | None = None

    def describe(self, card: ModelCard | None = None) -> str:
        return "prompt " + " + ".join(f"'{t}'" for t in self.texts)


@dataclass(frozen=True)
class LikeEmbedding:
    """Cosine similarity to a reference embedding."""

    embedding: tuple[float, ...]
    label: str = "region"

    def describe(self, card: ModelCard | None = None) -> str:
        return f"like '{self.label}'"


@dataclass(frozen=True, eq=False)
class OutputRegion:
    """The summed logits of ``target_class`` inside ``mask`` (H, W) of a dense output."""

    target_class: int | str
    mask: np.ndarray | None
    label: str = "region"

    def describe(self, card: ModelCard | None = None) -> str:
        return f"{_name(self.target_class, card)} in '{self.label}'"


Target = Union[int, str, None, tuple, Classes, Contrast, Prompt, LikeEmbedding, OutputRegion]
KINDS = {"classes": Classes, "contrast": Contrast, "prompt": Prompt, "like": LikeEmbedding,
         "output_region": OutputRegion}


def describe_target(target: Target, card: ModelCard | None = None) -> str:
    if hasattr(target, "describe"):
        return target.describe(card)
    return "top class" if target is None else _name(target, card)


def target_to_metadata(target: Target) -> Any:
    for kind, cls in KINDS.items():
        if isinstance(target, cls):
            if cls is OutputRegion:
                area = None if target.mask is None else int(np.count_nonzero(target.mask))
                return {"kind": kind, "target_class": target.target_class, "label": target.label,
                        "area": area}
            facts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(target).items()}
            return {"kind": kind, **facts}
    return list(target) if isinstance(target, tuple) else target


def target_from_metadata(facts: Any) -> Target:
    if isinstance(facts, Mapping):
        facts = dict(facts)
        cls = KINDS[facts.pop("kind")]
        if cls is OutputRegion:
            return OutputRegion(facts["target_class"], None, facts.get("label", "region"))
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in facts.items()})
    return tuple(facts) if isinstance(facts, list) else facts
