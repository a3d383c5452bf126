"""The event a dock's job yields once its model is loaded: :class:`ModelReady` with its facts.

Steps are ``core.progress.Progress``; the job runner (``jobs.JobRunner``) shows them and hands
every other event (this one, the tiled map rows) to the dock. Nothing here imports napari.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    """What a dock needs to know about a loaded model.

    ``layers`` holds (label, module name) pairs, the label naming the map's grid, e.g.
    ``("blocks.11.norm1 (tokens 14x14)", "blocks.11.norm1")``; ``heads`` is the number of
    attention heads of a transformer's last block (``None``: no readable attention).
    ``output`` is the card's (``"classes"``, ``"embedding"`` or ``"dense"``: which targets it
    answers); ``text`` whether it has a text tower (prompts), None until it is loaded.
    """

    spec: str
    weights: str | None
    classes: tuple[str, ...]
    layers: tuple[tuple[str, str], ...]
    heads: int | None = None
    output: str = "classes"
    text: bool | None = None


@dataclass(frozen=True)
class ModelReady:
    """The job's model is loaded: its classes and candidate layers."""

    model: ModelInfo
