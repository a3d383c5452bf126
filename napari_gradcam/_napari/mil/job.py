"""The dock's jobs: score a slide's tiles for a slide model, and drill one tile down to pixels.

Both run in the dock's worker thread and never touch the viewer: the run checks the request,
drives the one slide-model run the ``slide --mil`` command drives too
(``slides.mil_runner.run_slide_mil``: embed, score, paint) and returns a :class:`MilOutcome`;
the drill-down returns a :class:`DrillOutcome`. The dock adds layers from them on the main
thread. torch is imported only when a job runs.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gradcam._napari.jobs import USER_ERRORS
from napari_gradcam._napari.mil.source import SlideSource
from napari_gradcam.core.progress import Progress
from napari_gradcam.core.regions.region_stats import PlacedMap
from napari_gradcam.user_state import unexpected_error_message

if TYPE_CHECKING:
    from napari_gradcam.models.slide_model import SlideModel
    from napari_gradcam.slides.lazy_slide import Slide
    from napari_gradcam.slides.mil_runner import MilResult


@dataclass(frozen=True)
class MilRequest:
    """One run of the dock: the headless run's options, the slide and the scores to draw.

    ``options`` are the fields of ``slides.mil_runner.MilJob`` (built in the worker, where
    torch is imported).
    """

    options: dict[str, Any]
    source: SlideSource
    scores: tuple[str, ...]


@dataclass(frozen=True)
class MilOutcome:
    """A run's result, or the message of what to fix."""

    result: MilResult | None = None
    error: str | None = None


@dataclass(frozen=True)
class DrillOutcome:
    """A drill-down map of one tile placed on the slide, or what went wrong."""

    tile: int
    side: str
    placed: PlacedMap | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def run_mil(request: MilRequest) -> Generator[Progress, None, MilOutcome]:
    """Load the card, embed the slide's tiles (cached), score them and paint the maps.

    An unexpected error (a bug, not a bad input) is logged with its traceback and returned as
    the outcome's full message, so that the dock shows it instead of a bare "failed".
    """
    try:
        return (yield from _run_mil(request))
    except Exception as err:  # noqa: BLE001 - logged with its traceback, shown in full
        return MilOutcome(error=unexpected_error_message(err, "running the slide-level model"))


def _run_mil(request: MilRequest) -> Generator[Progress, None, MilOutcome]:
    from napari_gradcam.models.cache import cached_slide_model
    from napari_gradcam.slides.mil_runner import MilJob, run_slide_mil

    start = time.perf_counter()
    job = MilJob(**request.options)
    try:
        yield Progress(0, 1, f"loading the slide model {Path(job.card).name}")
        model = cached_slide_model(job.card)
        slide = request.source.open()
        _check_request(model, slide, request)
        result = yield from run_slide_mil(slide, model, job, shown=request.scores)
    except USER_ERRORS as err:
        return MilOutcome(error=str(err))
    return MilOutcome(replace(result, seconds=time.perf_counter() - start))


def _check_request(model: SlideModel, slide: Slide, request: MilRequest) -> None:
    from napari_gradcam.slides.mil_scores import ATTENTION

    if model.mpp is not None and slide.mpp is None:
        raise ValueError(
            f"the slide model reads tiles at {model.mpp} µm/px but the layer {slide.name!r} "
            "does not say its microns per pixel; open the slide with the plugin's reader, or "
            "set the layer's metadata['mpp']"
        )
    if ATTENTION in request.scores and not model.has_attention:
        raise ValueError(
            f"the card of {model.name!r} names no attention module and its aggregator offers "
            "no attention_weights: untick attention, or name the module in the card's "
            "'aggregator'"
        )


def run_drill(result: MilResult, tile: int, side: str) -> Generator[Progress, None, DrillOutcome]:
    """The drill-down map of one tile (Grad-CAM through the encoder), placed on the slide."""
    from napari_gradcam.slides.mil_runner import drill_tile

    yield Progress(0, 1, f"drilling tile {tile} down to its pixels")
    try:
        _pixels, explanation = drill_tile(
            result.slide, result.model, result.tiles, result.scores, tile, side
        )
    except USER_ERRORS as err:
        return DrillOutcome(tile, side, error=str(err))
    except Exception as err:  # noqa: BLE001 - logged with its traceback, shown in full
        context = f"drilling tile {tile} down"
        return DrillOutcome(tile, side, error=unexpected_error_message(err, context))
    (py, px), box = result.tiles.pixel_size, result.tiles.boxes[tile]
    stride = (explanation.stride[0] * py, explanation.stride[1] * px)
    placed = PlacedMap(np.asarray(explanation.cam, np.float32), stride, (box[0], box[1]))
    facts = {
        "tile": tile,
        "side": side,
        "box": [float(v) for v in box],
        "method": explanation.method,
        "layer": explanation.layer,
        "target_name": result.target_name,
    }
    yield Progress(1, 1, f"drill-down of tile {tile} ({side}) computed")
    return DrillOutcome(tile, side, placed, facts)
