"""What an explanation is asked about: a class, several, a contrast, a prompt, a region.

Every method, tiled run and trust check takes one ``Target``. The old forms stay: a class by
index or name, ``None`` for the top class, or a tuple with one class per image. The other
kinds are records here, without torch (the docks build them at napari's start-up); how each
turns a model's output into the explained score is ``core.explain.targets``.

Examples
--------
>>> describe_target(Contrast("tumour"), ModelCard(classes=("normal", "tumour")))
'tumour vs nearest class'
>>> target_from_metadata(target_to_metadata(Prompt(("nuclei", "dense nuclei"))))
Prompt(texts=('nuclei', 'dense nuclei'), template=None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_gradcam.core.card import ModelCard

ClassRef = int | str
"""A class by logit index or by the name on the model card."""

MAX_PROMPT_CHARS = 1000
"""The longest prompt text: a phrase (CLIP-style text towers read 77 tokens at most)."""
MAX_PROMPT_TEXTS = 64
"""The most texts in one prompt ensemble."""


@dataclass(frozen=True)
class Classes:
    """Several classes at once: the sum of their logits (which evidence supports them all).

    Attributes
    ----------
    classes : tuple of int or str
        Two or more classes by index or name.
    """

    classes: tuple[ClassRef, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(
                f"Classes needs two or more different classes, got {list(self.classes)}; "
                "for one class pass it as the target itself"
            )

    def describe(self, card: ModelCard) -> str:
        """The classes joined by "+"."""
        return " + ".join(_class_text(c, card) for c in self.classes)


@dataclass(frozen=True)
class Contrast:
    """One class against another (Finer-CAM): ``logit(main) - alpha * logit(against)``.

    Attributes
    ----------
    main : int or str
        The class whose evidence is shown.
    against : int or str, optional
        The class it is told apart from; ``None``: each image's nearest class, the one with the
        highest logit after ``main`` (Zhang et al. 2025).
    alpha : float
        Weight of the subtracted logit, in [0, 1]; 1 shows only what separates the two, 0 is
        plain Grad-CAM of ``main``.
    """

    main: ClassRef
    against: ClassRef | None = None
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0):
            raise ValueError(f"Contrast alpha must be a number in [0, 1], got {self.alpha!r}")
        if self.against is not None and self.against == self.main:
            raise ValueError(f"Contrast of class {self.main!r} against itself explains nothing")

    def describe(self, card: ModelCard) -> str:
        """Say "main vs against", or "main vs nearest class"."""
        other = "nearest class" if self.against is None else _class_text(self.against, card)
        return f"{_class_text(self.main, card)} vs {other}"


@dataclass(frozen=True)
class Prompt:
    """A text prompt for a vision-language model: how much the image matches it.

    The score is the cosine similarity of the image embedding with the prompt's text
    embedding; several texts form an ensemble whose embedding is the normalised mean of theirs.

    Attributes
    ----------
    texts : tuple of str
        One prompt, or several phrasings of one idea.
    template : str, optional
        Wraps each text (``"an H&E image of {}."``); ``None``: the model card's template.
    """

    texts: tuple[str, ...]
    template: str | None = None

    def __post_init__(self) -> None:
        texts = (self.texts,) if isinstance(self.texts, str) else tuple(self.texts)
        texts = tuple(str(t).strip() for t in texts)
        if not texts or not all(texts):
            raise ValueError("a prompt needs at least one non-empty text, e.g. 'tumour cells'")
        if len(texts) > MAX_PROMPT_TEXTS or max(map(len, texts)) > MAX_PROMPT_CHARS:
            raise ValueError(
                f"a prompt is at most {MAX_PROMPT_TEXTS} texts of at most {MAX_PROMPT_CHARS} "
                "characters each: a short phrase per idea, e.g. 'tumour cells'"
            )
        if self.template is not None and self.template.count("{}") != 1:
            raise ValueError(
                f"a prompt template holds '{{}}' once, where the text goes, got {self.template!r}"
            )
        object.__setattr__(self, "texts", texts)

    def describe(self, card: ModelCard) -> str:
        """Say "prompt 'text'" (the texts of an ensemble joined by "; ")."""
        return f"prompt '{'; '.join(self.texts)}'"


@dataclass(frozen=True)
class LikeEmbedding:
    """Likeness to a reference ("like this region"): cosine similarity of the embeddings.

    Attributes
    ----------
    embedding : tuple of float
        The reference embedding, e.g. from ``embed_region`` on a region of the image.
    label : str
        What the reference is, for names and records (e.g. the shape's name).
    """

    embedding: tuple[float, ...]
    label: str = "region"

    def __post_init__(self) -> None:
        values = tuple(float(v) for v in np.asarray(self.embedding, dtype=np.float64).ravel())
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError("a reference embedding needs finite values")
        if not any(values):
            raise ValueError("a reference embedding of zeros has no direction to compare with")
        object.__setattr__(self, "embedding", values)

    def describe(self, card: ModelCard) -> str:
        """Say "like 'label'"."""
        return f"like '{self.label}'"


@dataclass(frozen=True)
class OutputRegion:
    """A region of a dense (segmentation) output: the class's logits summed inside a mask.

    Attributes
    ----------
    target_class : int or str
        The output channel, by index or name.
    mask : numpy.ndarray, optional
        Boolean (H, W) in the explained image's pixels, or (N, H, W) one per image; ``None``:
        the whole output. Brought to the output's grid by area (each output pixel weighs the
        fraction of it inside the mask).
    label : str
        What the region is, for names and records (e.g. the shape's name).
    """

    target_class: ClassRef
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    label: str = "region"

    def __post_init__(self) -> None:
        if self.mask is None:
            return
        mask = np.asarray(self.mask)
        if mask.ndim not in (2, 3) or mask.dtype.kind not in "biu":
            raise ValueError(
                f"an output region's mask is a boolean (H, W) or (N, H, W) array, got "
                f"{mask.dtype} {mask.shape}"
            )
        mask = mask.astype(bool)
        if not mask.reshape(len(mask) if mask.ndim == 3 else 1, -1).any(axis=1).all():
            raise ValueError(
                f"the output region {self.label!r} is empty (no pixel inside the image); draw it "
                "over the image"
            )
        object.__setattr__(self, "mask", mask)

    def describe(self, card: ModelCard) -> str:
        """Say "class in 'label'"."""
        return f"{_class_text(self.target_class, card)} in '{self.label}'"


TargetKind = Classes | Contrast | Prompt | LikeEmbedding | OutputRegion
Target = ClassRef | None | Sequence[ClassRef] | TargetKind
"""What to explain: a class (index or name), one per image, ``None`` for the top class, or a
``TargetKind`` (several classes, a contrast, a prompt, a reference, an output region)."""

TARGET_KINDS: dict[str, type] = {
    "classes": Classes,
    "contrast": Contrast,
    "prompt": Prompt,
    "like": LikeEmbedding,
    "output_region": OutputRegion,
}
"""Each target kind by the name its metadata records."""

SIMILARITY_KINDS = (Prompt, LikeEmbedding)
"""Kinds scored by a cosine similarity (no probability), which need an embedding output."""


def describe_target(target: Target, card: ModelCard) -> str:
    """Say what ``target`` explains, for layer names and records ("top class" for ``None``)."""
    if target is None:
        return "top class"
    if isinstance(target, TargetKind):
        return target.describe(card)
    if isinstance(target, (int, str)):
        return _class_text(target, card)
    return ", ".join(_class_text(t, card) for t in target)


def target_to_metadata(target: Target) -> Any:
    """JSON-ready form: an old-form target as it is, a kind as ``{"kind": ..., fields}``.

    An output region records its class, label and mask area (pixels), not the mask.
    """
    if not isinstance(target, TargetKind):
        return list(target) if isinstance(target, tuple) else target
    kind = next(name for name, cls in TARGET_KINDS.items() if isinstance(target, cls))
    if isinstance(target, OutputRegion):
        if isinstance(target, RecordedRegion):  # read back: its mask was never stored
            area = target.mask_pixels
        else:
            area = None if target.mask is None else int(target.mask.sum())
        return {
            "kind": kind,
            "target_class": target.target_class,
            "label": target.label,
            "mask_pixels": area,
        }
    facts = {name: getattr(target, name) for name in target.__dataclass_fields__}
    return {"kind": kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in facts.items()}}


def target_from_metadata(value: Any) -> Target:
    """Read what :func:`target_to_metadata` wrote.

    An output region comes back without its mask: whole-output when none was recorded, else it
    cannot be re-run (``ValueError`` when asked to bind it; see ``needs_mask``).
    """
    if isinstance(value, list):
        return tuple(value)
    if not isinstance(value, Mapping):
        return value
    facts = dict(value)
    kind = TARGET_KINDS.get(str(facts.pop("kind", "")))
    if kind is None:
        raise ValueError(
            f"unknown target kind {value.get('kind')!r}; known: {', '.join(TARGET_KINDS)}"
        )
    if kind is OutputRegion:
        return RecordedRegion(
            facts["target_class"],
            label=str(facts.get("label", "region")),
            mask_pixels=facts.get("mask_pixels"),
        )
    try:
        return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in facts.items()})
    except TypeError as err:
        raise ValueError(f"a {kind.__name__} target record has unexpected fields: {err}") from err


@dataclass(frozen=True)
class RecordedRegion(OutputRegion):
    """An output region read back from a record: its class and label, its mask not stored.

    Attributes
    ----------
    mask_pixels : int, optional
        How many image pixels the region covered (``None``: the whole output).
    """

    mask_pixels: int | None = None

    @property
    def needs_mask(self) -> bool:
        """Whether re-running it needs the region drawn again (it covered part of the image)."""
        return self.mask_pixels is not None


def _class_text(ref: ClassRef, card: ModelCard) -> str:
    """A class's name from the card when known, else the reference as given."""
    if isinstance(ref, int):
        return card.class_name(ref)
    return ref
