"""Model cards: what a model expects (classes, input size, normalisation, microns per pixel)."""

from __future__ import annotations

import math
import string
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from napari_gradcam.core.json_fields import (
    MAX_SIDE,
    MPP,
    choice_field,
    json_field,
    names_field,
    numbers_field,
    object_field,
    read_fields,
    read_json_object,
    section,
    text_field,
    whole_number,
)

MODEL_OUTPUTS = ("classes", "embedding", "dense")
"""What a model's output can be: class logits (N, K), an embedding (N, D) or dense logits
(N, C, h, w); the card says which (never guessed from the shape)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_CHANNELS = 64
"""The most input channels a card may declare."""


def _input_size(value: object, field: str, source: str) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(
            f"{source}: {field!r} must be [height, width] in pixels, e.g. [224, 224], "
            f"got {value!r:.60}"
        )
    height, width = (whole_number(MAX_SIDE)(side, field, source) for side in value)
    return height, width


def _normalisation(value: object, field: str, source: str) -> tuple[float, ...]:
    """``mean`` or ``std`` on the [0, 1] scale; 0-255 values are divided by 255, with a warning."""
    values = numbers_field(value, field, source)
    if max(values) <= 1:
        return values
    if max(values) > 255:
        raise ValueError(
            f"{source}: {field!r} {list(values)} is on neither the 0-1 nor the 0-255 scale; "
            "give it for pixels scaled to [0, 1], e.g. [0.485, 0.456, 0.406]"
        )
    scaled = tuple(round(v / 255, 6) for v in values)
    warnings.warn(
        f"{source}: {field!r} {list(values)} looks like 0-255 values; pixels are scaled to "
        f"[0, 1] first, so it is read as {list(scaled)}. Write it on the 0-1 scale to silence "
        "this warning.",
        UserWarning,
        stacklevel=5,
    )
    return scaled


OPEN_CLIP_TOKENIZER = "open_clip:"
"""How a card names open_clip's own tokenizer of an architecture (``open_clip:ViT-B-32``)."""


def _template(value: object, field: str, source: str) -> str:
    """A prompt template: text with one ``{}`` where the prompt goes."""
    text = text_field(value, field, source)
    try:
        slots = [slot for _, slot, _, _ in string.Formatter().parse(text) if slot is not None]
    except ValueError as err:
        raise ValueError(f"{source}: {field!r} {text!r} is not a template: {err}") from err
    if slots != [""]:
        raise ValueError(
            f"{source}: {field!r} must hold one '{{}}' where the prompt goes, e.g. "
            f"'an H&E image of {{}}.', got {text!r}"
        )
    return text


@dataclass(frozen=True)
class TextCard:
    """How a vision-language model reads a text prompt: its tokenizer and prompt template.

    Parameters
    ----------
    tokenizer : str, optional
        ``"open_clip:ARCH"`` (open_clip's own tokenizer of that architecture, which ships with
        open_clip) or a local folder of Hugging Face tokenizer files (``tokenizer.json``, ...),
        relative to the card file. ``None``: the model's own, where it ships with its library.
    template : str
        Each prompt is written into the template's ``{}`` before it is encoded, e.g.
        ``"an H&E image of {}."``.
    """

    tokenizer: str | None = json_field(text_field, None)
    template: str = json_field(_template, "{}")

    def beside(self, folder: Path) -> TextCard:
        """The section, a relative tokenizer folder read from ``folder`` (the card's folder)."""
        if self.tokenizer is None or self.tokenizer.startswith(OPEN_CLIP_TOKENIZER):
            return self
        return replace(self, tokenizer=str(folder / Path(self.tokenizer).expanduser()))


@dataclass(frozen=True)
class ModelCard:
    """Facts about a classifier needed to feed and explain it.

    A card file (JSON) may hold each field below, and nothing else; all are optional.

    Parameters
    ----------
    classes : tuple of str, optional
        Class names in logit order. For a single-logit (sigmoid) model give two names,
        ``(negative, positive)``. Empty means "unknown": classes are shown as numbers.
    input_size : tuple of int, optional
        (height, width) the model was trained on; also the smallest image it accepts.
        Unknown when ``None``: any size is tried, and layer discovery uses 224 x 224.
    in_channels : int
        Number of input channels (3 for RGB, 1 for grayscale).
    mean, std : tuple of float
        Per-channel normalisation applied to intensities scaled to [0, 1] (ImageNet's for
        3 channels, 0.5 and 0.25 otherwise, when the card does not say).
    mpp : float, optional
        Microns per pixel of the training data.
    default_layer : str, optional
        Module name to explain when none is given.
    output : str
        What the model returns: ``"classes"`` (logits (N, K): class targets), ``"embedding"``
        (an image embedding (N, D): prompts and "like this region"), or ``"dense"`` (per-pixel
        logits (N, C, h, w) of a segmentation model: output regions).
    kwargs : dict
        Construction arguments of a spec that builds the model (``timm:NAME``, ``smp:NAME``,
        ``module:factory``), e.g. ``{"encoder_name": "resnet18"}``; the weights must fit them.
    description : str
        What the model predicts, for people.
    text : TextCard, optional
        A vision-language model's tokenizer and prompt template (``{"tokenizer": ...,
        "template": ...}``).
    extra : dict
        Anything else, kept as it is.
    """

    name: str = json_field(text_field, "model")
    classes: tuple[str, ...] = json_field(names_field, ())
    input_size: tuple[int, int] | None = json_field(_input_size, None)
    in_channels: int = json_field(whole_number(MAX_CHANNELS), 3)
    mean: tuple[float, ...] = json_field(_normalisation, IMAGENET_MEAN)
    std: tuple[float, ...] = json_field(_normalisation, IMAGENET_STD)
    mpp: float | None = json_field(MPP, None)
    default_layer: str | None = json_field(text_field, None)
    output: str = json_field(choice_field(MODEL_OUTPUTS), "classes")
    kwargs: dict[str, Any] = json_field(object_field, {})
    description: str = json_field(text_field, "")
    text: TextCard | None = json_field(section(TextCard), None)
    extra: dict[str, Any] = json_field(object_field, {})

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(
                f"model card {self.name!r}: mean and std need {self.in_channels} values "
                f"(one per input channel), got {len(self.mean)} and {len(self.std)}"
            )
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ValueError(
                f"model card {self.name!r}: 'mean' and 'std' must be finite numbers, got "
                f"{self.mean} and {self.std}"
            )
        if self.output not in MODEL_OUTPUTS:
            raise ValueError(
                f"model card {self.name!r}: 'output' is one of {', '.join(MODEL_OUTPUTS)}, "
                f"got {self.output!r}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"model card {self.name!r}: 'std' values must be > 0, got {self.std}")

    @property
    def probe_shape(self) -> tuple[int, int, int, int]:
        """(1, C, H, W) of a dry-run input: the input size, or 224 x 224 when unknown."""
        return (1, self.in_channels, *(self.input_size or (224, 224)))

    def class_name(self, index: int) -> str:
        """Return the name of class ``index``, or its number when the card has no names."""
        return self.classes[index] if 0 <= index < len(self.classes) else str(index)

    def class_index(self, name_or_index: str | int) -> int:
        """Return the logit index of a class given by name or number."""
        if isinstance(name_or_index, int):
            return name_or_index
        if name_or_index in self.classes:
            return self.classes.index(name_or_index)
        if name_or_index.lstrip("-").isdigit():
            return int(name_or_index)
        raise ValueError(
            f"unknown class {name_or_index!r}; this model's classes are: "
            f"{', '.join(self.classes) or '(unnamed: use a number)'}"
        )

    def to_json(self, path: str | Path) -> None:
        """Write the card as strict JSON, atomically."""
        from napari_gradcam.core.output_files import save_json

        save_json(Path(path), asdict(self))

    @classmethod
    def from_dict(
        cls,
        data: object,
        *,
        source: str = "model card",
        prefix: str = "",
        defaults: Mapping[str, Any] | None = None,
    ) -> ModelCard:
        """Build a card from a JSON object, with errors that name the field.

        ``mean`` or ``std`` written on the 0-255 scale (a value above 1) are divided by 255,
        with a warning: pixels are scaled to [0, 1] before normalisation. ``defaults`` fill the
        fields the object leaves out (a timm model's pretrained config); their ``mean`` and
        ``std`` only when they have one value per input channel. ``prefix`` is the card's path
        inside another file (``"card."``).
        """
        values = read_fields(cls, data, source, prefix)
        channels = values.get("in_channels", 3)
        for key, value in (defaults or {}).items():
            if key not in ("mean", "std") or len(value) == channels:
                values.setdefault(key, value)
        if channels != 3:
            values.setdefault("mean", (0.5,) * channels)
            values.setdefault("std", (0.25,) * channels)
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path, defaults: Mapping[str, Any] | None = None) -> ModelCard:
        """Read a card from a JSON file (``defaults`` as in :meth:`from_dict`).

        A tokenizer folder in its ``text`` section is read relative to the card's folder.
        """
        path = Path(path)
        data = read_json_object(path, "model card")
        card = cls.from_dict(data, source=f"model card {path}", defaults=defaults)
        if card.text is None:
            return card
        return replace(card, text=card.text.beside(path.parent))
