"""The typed record of a heatmap layer: what made it and where it lies, to and from metadata.

Every heatmap layer of the plugin carries its facts in ``layer.metadata["napari_gradcam"]``
(a plain dict, so sessions and napari's own saving keep it). :class:`HeatmapRecord` is the one
reader and writer of that dict; the docks, files and sessions ask it instead of reading keys.
The format is the one written since the first release: records read back what any earlier
version wrote, and keep keys they do not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image, Layer

from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.target_words import names_a_class, score_text
from napari_gradcam.core.explain.method_options import option_specs
from napari_gradcam.core.regions.region_stats import PlacedMap
from napari_gradcam.core.settings import ExplainSettings

METADATA_KEY = "napari_gradcam"
PER_TILE = "predicted (per tile)"
"""The class a tiled heatmap records when every tile explained its own predicted class."""
REQUIRED = ("model", "method", "target_name", "stride", "origin", "image_layer", "box")
"""Keys every finished heatmap has had since the first release."""
_READ = (
    "weights",
    "target_index",
    "score",
    "probability",
    "region",
    "slice",
    "pyramid_level",
    "tiles",
    "normalisation",
    "raw_range",
)
"""The other keys the record reads besides its settings' (``extra`` keeps the rest)."""


@dataclass(frozen=True)
class TileCounts:
    """How a tiled heatmap was made: tiles laid, explained, their overlap and level-0 size."""

    total: int
    explained: int
    overlap: float = 0.0
    size: tuple[float, float] | None = None

    def to_facts(self) -> dict[str, Any]:
        """The ``"tiles"`` entry of the metadata."""
        facts = {
            "total": self.total,
            "explained": self.explained,
            "skipped": self.total - self.explained,
            "overlap": self.overlap,
        }
        return facts if self.size is None else {**facts, "size": self.size}

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any]) -> TileCounts:
        """Read a ``"tiles"`` entry (the size is missing from early tiled heatmaps)."""
        size = facts.get("size")
        return cls(
            int(facts.get("total", 0)),
            int(facts.get("explained", 0)),
            float(facts.get("overlap", 0.0)),
            (float(size[0]), float(size[1])) if size is not None else None,
        )


@dataclass(frozen=True)
class HeatmapRecord:
    """What made a heatmap and where it lies on its image.

    Attributes
    ----------
    settings : ExplainSettings
        How the map was computed: its ``layer`` the explained module (``"input"`` or None
        where the method uses none), its ``target`` the class to explain again (None for a
        map of each tile's own class), or the prompt, region or classes (an output region
        keeps its label and area, not its mask).
    target_name : str
        The explained class, prompt or region in words (``describe``), or :data:`PER_TILE`
        for a map of each tile's own class.
    stride, origin : tuple of float
        Level-0 pixels per map cell, and of the top-left corner of the first cell.
    target_index, score, probability : int, float, float or None
        The class's index, score and probability (not for tiled maps); a prompt's or
        region's map has a score (its similarity) and no index or probability.
    slice_index : tuple of int
        The image plane (indices of the leading axes).
    tiles : TileCounts or None
        Set for a map stitched from tiles.
    normalisation : str or None
        How the layer's values relate to the raw map, in words.
    raw_range : tuple of float or None
        The raw map's ``(min, max)`` when the layer shows it as 0-1 of that range (raw =
        min + value * (max - min)).
    extra : mapping
        Keys of the metadata this version does not know, kept as they were.
    """

    spec: str
    weights: str | None
    settings: ExplainSettings
    target_name: str
    stride: tuple[float, float]
    origin: tuple[float, float]
    image_layer: str
    box: Box
    target_index: int | None = None
    score: float | None = None
    probability: float | None = None
    slice_index: tuple[int, ...] = ()
    level: int = 0
    tiles: TileCounts | None = None
    normalisation: str | None = None
    raw_range: tuple[float, float] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def score_text(self) -> str:
        """The map's number in words: ``"p=0.87"``, ``"similarity 0.31"`` (empty when tiled)."""
        return score_text(self.settings.target, self.score, self.probability)

    @property
    def model_layer(self) -> str | None:
        """The heatmap's layer, or None when its method uses none (occlusion, guided)."""
        from napari_gradcam.core.explain.methods import METHODS

        method = METHODS.get(self.settings.method)
        return self.settings.layer if method is None or method.uses_layer else None

    def placed(self, cam: Any) -> PlacedMap:
        """``cam`` (the layer's data) placed on level-0 pixels of the image."""
        return PlacedMap(np.asarray(cam, dtype=float), self.stride, self.origin)

    def to_facts(self) -> dict[str, Any]:
        """The metadata dict (the value under :data:`METADATA_KEY`)."""
        box = self.box
        settings = self.settings.to_metadata()
        if names_a_class(self.settings.target):
            del settings["target"]  # the target_name says it
        facts: dict[str, Any] = {
            "model": self.spec,
            "weights": self.weights,
            **settings,
            "target_index": self.target_index,
            "target_name": self.target_name,
            "score": self.score,
            "probability": self.probability,
            "stride": self.stride,
            "origin": self.origin,
            "image_layer": self.image_layer,
            "region": box.label,
            "box": (box.y0, box.x0, box.y1, box.x1),
            "slice": self.slice_index,
            "pyramid_level": self.level,
            "tiles": self.tiles.to_facts() if self.tiles is not None else None,
            "normalisation": self.normalisation,
            "raw_range": self.raw_range,
        }
        optional = ("target_index", "score", "probability", "tiles", "normalisation", "raw_range")
        kept = {k: v for k, v in facts.items() if v is not None or k not in optional}
        return {**kept, **self.extra}

    def to_metadata(self) -> dict[str, Any]:
        """The layer metadata: ``{"napari_gradcam": facts}``."""
        return {METADATA_KEY: self.to_facts()}

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any]) -> HeatmapRecord:
        """Read the facts of a heatmap, as written by this or any earlier version.

        Raise ``ValueError`` when a fact every heatmap has is missing or malformed.
        """
        missing = [key for key in REQUIRED if key not in facts]
        if missing:
            raise ValueError(f"the heatmap's metadata lacks {', '.join(missing)}")
        try:
            return cls._read(facts)
        except (TypeError, ValueError, KeyError, IndexError) as err:
            raise ValueError(f"the heatmap's metadata is malformed: {err}") from err

    @classmethod
    def _read(cls, facts: Mapping[str, Any]) -> HeatmapRecord:
        y0, x0, y1, x1 = (int(v) for v in facts["box"])
        tiles = facts.get("tiles")
        target_name = str(facts["target_name"])
        target = facts.get("target")  # a prompt, region or several classes: its facts
        if not isinstance(target, Mapping):
            target = None if target_name == PER_TILE else target_name
        settings = ExplainSettings.from_metadata(
            {**facts, "layer": facts.get("layer") or None, "target": target}
        )
        options = (spec.key for _, spec in option_specs(type(settings.options)))
        known = {*REQUIRED, *_READ, *settings.to_metadata(), *options}
        return cls(
            spec=str(facts["model"]),
            weights=_optional(facts.get("weights"), str),
            settings=settings,
            target_name=target_name,
            stride=_pair(facts["stride"]),
            origin=_pair(facts["origin"]),
            image_layer=str(facts["image_layer"]),
            box=Box(y0, x0, y1, x1, str(facts.get("region", "region"))),
            target_index=_optional(facts.get("target_index"), int),
            score=_optional(facts.get("score"), float),
            probability=_optional(facts.get("probability"), float),
            slice_index=tuple(int(i) for i in facts.get("slice", ())),
            level=int(facts.get("pyramid_level", 0)),
            tiles=TileCounts.from_facts(tiles) if isinstance(tiles, Mapping) else None,
            normalisation=_optional(facts.get("normalisation"), str),
            raw_range=_optional(facts.get("raw_range"), _pair),
            extra={k: v for k, v in facts.items() if k not in known},
        )

    @classmethod
    def of(cls, layer: Layer | None) -> HeatmapRecord | None:
        """The record of a finished heatmap layer; None for any other layer."""
        if not isinstance(layer, Image):
            return None
        facts = layer.metadata.get(METADATA_KEY)
        if not isinstance(facts, Mapping) or not set(REQUIRED) <= facts.keys():
            return None
        try:
            return cls.from_facts(facts)
        except ValueError:
            return None


def is_heatmap(layer: Layer | None) -> bool:
    """Whether ``layer`` is a finished heatmap (not one still filling in, nor an image)."""
    return HeatmapRecord.of(layer) is not None


def filling_in_metadata() -> dict[str, Any]:
    """The metadata of a heatmap still filling in: the plugin's, but no record yet."""
    return {METADATA_KEY: {"running": True}}


def is_gradcam_layer(layer: Layer) -> bool:
    """Whether ``layer`` was made by the plugin as a heatmap, finished or still filling in."""
    return METADATA_KEY in layer.metadata


def slide_choices(layers: Iterable[Layer]) -> list[tuple[str, Image]]:
    """The RGB image layers a slide dock can run on, by name: every one but the plugin's maps."""
    return [
        (layer.name, layer)
        for layer in layers
        if isinstance(layer, Image) and layer.rgb and not is_gradcam_layer(layer)
    ]


def _pair(values: Any) -> tuple[float, float]:
    first, second = values
    return (float(first), float(second))


def _optional(value: Any, kind: type) -> Any:
    return None if value is None else kind(value)
