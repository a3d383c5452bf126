"""The similarity dock's jobs: map a slide's similarity to a target, drill one tile down.

Both run in the dock's worker thread and never touch the viewer: the run loads the model,
turns the request into a target (a prompt, or the embedding of a shape's box on the slide)
and drives the one driver the ``similarity`` command drives too
(``slides.similarity_map.similarity_slide_map``); the drill-down runs Grad-CAM of the same
target on one tile. The dock adds layers from their outcomes on the main thread. torch is
imported only when a job runs.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from napari_gradcam._napari.jobs import USER_ERRORS
from napari_gradcam._napari.mil.job import DrillOutcome
from napari_gradcam._napari.mil.source import SlideSource
from napari_gradcam.core.progress import Progress
from napari_gradcam.user_state import unexpected_error_message

if TYPE_CHECKING:
    from napari_gradcam.slides.similarity_map import SimilarityMap

TOP = "top"
"""The side of every drilled tile: the most similar ones (the MIL table's column)."""


@dataclass(frozen=True)
class SimilarityRequest:
    """One run of the dock: the model, the target and the slide.

    ``prompts`` (with ``template``) for a prompt; else ``region``, a level-0 box
    ``(y0, x0, y1, x1)`` of the slide named ``region_label``, for "like this region".
    """

    spec: str
    source: SlideSource
    prompts: tuple[str, ...] = ()
    template: str | None = None
    region: tuple[float, float, float, float] | None = None
    region_label: str = "region"
    overlap: float = 0.0
    cache_dir: str | None = None


@dataclass(frozen=True)
class SimilarityOutcome:
    """A run's map, or the message of what to fix."""

    result: SimilarityMap | None = None
    error: str | None = None


def run_similarity(request: SimilarityRequest) -> Generator[Progress, None, SimilarityOutcome]:
    """Load the model, embed the slide's tiles (cached) and score them against the target.

    An unexpected error (a bug, not a bad input) is logged with its traceback and returned as
    the outcome's full message.
    """
    try:
        return (yield from _map_similarity(request))
    except USER_ERRORS as err:
        return SimilarityOutcome(error=str(err))
    except Exception as err:  # noqa: BLE001 - logged with its traceback, shown in full
        return SimilarityOutcome(error=unexpected_error_message(err, "mapping the similarity"))


def _map_similarity(request: SimilarityRequest) -> Generator[Progress, None, SimilarityOutcome]:
    from napari_gradcam.core.targets import Prompt
    from napari_gradcam.models.cache import cached_model
    from napari_gradcam.slides.similarity_map import (
        SimilarityJob,
        region_target,
        similarity_slide_map,
    )

    yield Progress(0, 2, f"loading model {request.spec!r}")
    model = cached_model(request.spec)
    slide = request.source.open()
    if request.prompts:
        target = Prompt(request.prompts, request.template)
    elif request.region is not None:
        yield Progress(1, 2, f"embedding {request.region_label}")
        target = region_target(slide, model, request.region, request.region_label)
    else:
        raise ValueError("type a prompt, or pick a shape to find tissue like it")
    job = SimilarityJob(target, overlap=request.overlap, cache_dir=request.cache_dir)
    return SimilarityOutcome((yield from similarity_slide_map(slide, model, job)))


def run_similarity_drill(
    result: SimilarityMap, tile: int
) -> Generator[Progress, None, DrillOutcome]:
    """Grad-CAM of the map's target on one tile, placed on the slide."""
    from napari_gradcam.slides.similarity_map import drill_down_tile

    yield Progress(0, 1, f"drilling tile {tile} down to its pixels")
    try:
        drill = drill_down_tile(result, tile)
    except USER_ERRORS as err:
        return DrillOutcome(tile, TOP, error=str(err))
    except Exception as err:  # noqa: BLE001 - logged with its traceback, shown in full
        return DrillOutcome(tile, TOP, error=unexpected_error_message(err, f"drilling {tile}"))
    explanation = drill.explanation
    facts = {
        "tile": tile,
        "box": [float(v) for v in result.tiles.boxes[tile]],
        "method": explanation.method,
        "layer": explanation.layer,
        "target_name": result.label,
        "similarity": float(result.scores[tile]),
    }
    yield Progress(1, 1, f"drill-down of tile {tile} computed")
    return DrillOutcome(tile, TOP, drill.placed, facts)
