"""Model cards: what a model expects (classes, input size, normalisation, microns per pixel)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelCard:
    """Facts about a classifier needed to feed and explain it.

    Parameters
    ----------
    name : str
        Human-readable model name.
    classes : tuple of str, optional
        Class names in logit order. For a single-logit (sigmoid) model give two names,
        ``(negative, positive)``. Empty means "unknown": classes are shown as numbers.
    input_size : tuple of int, optional
        (height, width) the model was trained on; also the smallest image it accepts.
        Unknown when ``None``: any size is tried, and layer discovery uses 224 x 224.
    in_channels : int
        Number of input channels (3 for RGB, 1 for grayscale).
    mean, std : tuple of float
        Per-channel normalisation applied to intensities scaled to [0, 1].
    mpp : float, optional
        Microns per pixel of the training data.
    default_layer : str, optional
        Module name to explain when none is given.
    description : str
        What the model predicts, for people.
    """

    name: str = "model"
    classes: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None
    in_channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    mpp: float | None = None
    default_layer: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(
                f"model card {self.name!r}: mean and std need {self.in_channels} values "
                f"(one per input channel), got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"model card {self.name!r}: std values must be > 0, got {self.std}")

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
        from napari_gradcam.files import save_json

        save_json(Path(path), asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model card") -> ModelCard:
        """Build a card from a dict, with clear errors for unknown or ill-typed keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; valid keys are {sorted(known)}")
        values = dict(data)
        for key in ("classes", "input_size", "mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if "in_channels" in values and "mean" not in values and values["in_channels"] != 3:
            values.setdefault("mean", (0.5,) * values["in_channels"])
            values.setdefault("std", (0.25,) * values["in_channels"])
        try:
            return cls(**values)
        except TypeError as err:
            raise ValueError(f"{source}: {err}") from err

    @classmethod
    def from_json(cls, path: str | Path) -> ModelCard:
        """Read a card from a JSON file."""
        path = Path(path)
        return cls.from_dict(read_json_object(path, "model card"), source=f"model card {path}")


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the file in the errors ("model card", ...).

    Raises
    ------
    ValueError
        When the file is not valid JSON or does not hold an object.
    """
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object")
    return data
