"""What a running job reports to the widget: progress steps and the loaded model's facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_gradcam._napari.explain.tiled_job import TiledUpdate


@dataclass(frozen=True)
class ModelInfo:
    """What the widget needs to know about a loaded model.

    ``layers`` holds (label, module name) pairs, the label naming the map's grid, e.g.
    ``("blocks.11.norm1 (tokens 14x14)", "blocks.11.norm1")``.
    """

    spec: str
    weights: str | None
    classes: tuple[str, ...]
    layers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Progress:
    """One step of a job.

    ``model`` is set once the model has loaded, ``update`` while a region is explained tile
    by tile.
    """

    step: int
    total: int
    message: str
    model: ModelInfo | None = None
    update: TiledUpdate | None = None
