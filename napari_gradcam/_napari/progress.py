"""What a running job tells its dock: small typed events, yielded by the worker.

A job yields :class:`Progress` for each step and :class:`ModelReady` once its model is loaded;
the tiled branch adds its own ``TiledUpdate`` events (``explain.tiled_job``). The job runner
(``jobs.JobRunner``) shows the steps and hands every other event to the dock. Nothing here
imports napari or the jobs, so any job module can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_gradcam.core.progress import Progress

__all__ = ["ModelInfo", "ModelReady", "Progress"]


@dataclass(frozen=True)
class ModelInfo:
    """What a dock needs to know about a loaded model.

    ``layers`` holds (label, module name) pairs, the label naming the map's grid, e.g.
    ``("blocks.11.norm1 (tokens 14x14)", "blocks.11.norm1")``; ``heads`` is the number of
    attention heads of a transformer's last block (``None``: no readable attention).
    """

    spec: str
    weights: str | None
    classes: tuple[str, ...]
    layers: tuple[tuple[str, str], ...]
    heads: int | None = None


@dataclass(frozen=True)
class ModelReady:
    """The job's model is loaded: its classes and candidate layers."""

    model: ModelInfo
