"""The dock's jobs: score a slide's tiles for a slide model, and drill one tile down to pixels.

Both run in the dock's worker thread and never touch the viewer: the run yields its steps and
returns a :class:`MilOutcome`, the drill-down returns a :class:`DrillOutcome`; the dock adds
layers from them on the main thread. The work itself is the headless run's
(``slides.embeddings``, ``slides.mil_scores``, ``slides.mil_outputs.score_map``,
``slides.mil_runner.drill_tile``). torch is imported only when a job runs.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
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
    from napari_gradcam.slides.embeddings import SlideEmbeddings
    from napari_gradcam.slides.mil_runner import MilJob
    from napari_gradcam.slides.mil_scores import TileScores
    from napari_gradcam.slides.reader import Slide


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
class ScoreMap:
    """One tile score painted over its tiles, placed in level-0 pixels of the slide."""

    name: str
    placed: PlacedMap
    signed: bool


@dataclass(frozen=True)
class MilResult:
    """What a run found: the prediction, every tile's scores and their maps."""

    slide: Slide
    model: SlideModel
    tiles: SlideEmbeddings
    scores: TileScores
    maps: tuple[ScoreMap, ...]
    seconds: float

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the slide logits."""
        logits = self.scores.logits.astype(np.float64)
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()

    @property
    def target_name(self) -> str:
        """The explained class."""
        return self.model.classes[self.scores.target]

    def prediction(self) -> str:
        """``"<card> calls this slide positive: 0.98 (negative 0.02); the maps explain positive"``.

        The card's name says what the model looks for, the class names what it decided.
        """
        classes, probabilities = self.model.classes, self.probabilities
        ranked = np.argsort(-probabilities, kind="stable")
        top, others = ranked[0], ranked[1:]
        rest = ", ".join(f"{classes[i]} {probabilities[i]:.2f}" for i in others)
        return (
            f"{self.model.name} calls this slide {classes[top]}: {probabilities[top]:.2f}"
            f"{f' ({rest})' if rest else ''}; the maps explain {self.target_name}"
        )

    def summary(self) -> str:
        """``"308 tiles scored in 6.1 s"`` (and whether the embeddings came from the cache)."""
        cached = " (cached embeddings)" if self.tiles.cached else ""
        return f"{len(self.tiles.embeddings)} tiles scored{cached} in {self.seconds:.1f} s"


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
    from napari_gradcam.slides.mil_runner import MilJob

    start = time.perf_counter()
    job = MilJob(**request.options)
    try:
        yield Progress(0, 1, f"loading the slide model {Path(job.card).name}")
        model = cached_slide_model(job.card)
        slide = request.source.open()
        _check_request(model, slide, request)
        tiles = yield from _embed(slide, model, job)
        total = len(tiles.embeddings) + 2
        yield Progress(total - 2, total, f"scoring {len(tiles.embeddings)} tiles")
        scores = _score(model, tiles, job)
        yield Progress(total - 1, total, "painting the tile maps")
        maps = _paint(tiles, scores, request.scores, job)
    except USER_ERRORS as err:
        return MilOutcome(error=str(err))
    seconds = time.perf_counter() - start
    return MilOutcome(MilResult(slide, model, tiles, scores, maps, seconds))


def _check_request(model: SlideModel, slide: Slide, request: MilRequest) -> None:
    from napari_gradcam.slides.mil_scores import ATTENTION

    if model.mpp is not None and slide.mpp is None:
        raise ValueError(
            f"the slide model reads tiles at {model.mpp} µm/px but the layer {slide.name!r} "
            "does not say its microns per pixel; open the slide with the plugin's reader, or "
            "set the layer's metadata['mpp']"
        )
    if ATTENTION in request.scores and model.attention_module is None:
        raise ValueError(
            f"the card of {model.name!r} names no attention module: untick attention, or "
            "name the module in the card's 'aggregator'"
        )


def _embed(
    slide: Slide, model: SlideModel, job: MilJob
) -> Generator[Progress, None, SlideEmbeddings]:
    from napari_gradcam.slides.embeddings import embedding_steps

    steps = embedding_steps(
        slide, model, card=job.card, overlap=job.overlap, min_tissue=job.min_tissue,
        batch_size=job.batch_size, cache_dir=job.cache_dir,
    )  # fmt: skip
    done = 0
    while True:
        try:
            count, total = next(steps)
        except StopIteration as finished:
            return finished.value
        done += count
        yield Progress(done, total + 2, f"embedding tiles: {done}/{total}")


def _score(model: SlideModel, tiles: SlideEmbeddings, job: MilJob) -> TileScores:
    from napari_gradcam.slides.mil_scores import score_tiles

    return score_tiles(
        model, tiles.embeddings, tiles.coords, target=job.target, baseline=job.baseline
    )


def _paint(
    tiles: SlideEmbeddings, scores: TileScores, names: tuple[str, ...], job: MilJob
) -> tuple[ScoreMap, ...]:
    from napari_gradcam.slides.mil_outputs import score_map
    from napari_gradcam.slides.mil_scores import SIGNED

    shown = scores.percentiles() if job.percentile else scores.scores
    maps = []
    for name in names:
        painted, stride, origin = score_map(tiles, shown[name], job.blur)
        maps.append(ScoreMap(name, PlacedMap(painted, stride, origin), SIGNED[name]))
    return tuple(maps)


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
