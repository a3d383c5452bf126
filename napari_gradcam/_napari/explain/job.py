"""The Explain dock's job behind the Explain button: load the (cached) model, explain each region.

Runs in a thread worker (``jobs.JobRunner``). It never touches the viewer: it yields typed
events (``progress``) and returns a :class:`JobOutcome` that the widget applies on the main
thread. torch is imported here only when the job runs.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gradcam._napari.explain.region_query import LikeRegion, OutputMask, RegionTarget
from napari_gradcam._napari.explain.tiled_job import (
    TiledResult,
    TilingOptions,
    find_tissue,
    plan_region,
    run_tiles,
)
from napari_gradcam._napari.jobs import USER_ERRORS, load_model_step
from napari_gradcam._napari.plane import Plane, plane_sampling, read_crop
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.target_words import score_text
from napari_gradcam.core.progress import Progress
from napari_gradcam.core.regions.region_stats import PlacedMap
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import LikeEmbedding, OutputRegion, Target

if TYPE_CHECKING:
    from napari_gradcam.core.explain.explanation import Explanation
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.core.tiling.slide_tissue import TissueMap

__all__ = ["ExplainJob", "JobOutcome", "RegionResult", "run_job"]
SCALE_WARNING_RATIO = 2.0
"""A region this many times the model input (on either side), fed whole, gets a warning."""


@dataclass(frozen=True)
class ExplainJob:
    """What to explain and how (``settings``); ``plane=None`` only loads the model.

    With ``tiling``, boxes larger than the model input are explained tile by tile (with the
    ``tissue`` already found for this image, else found once for the job). A
    ``region_target`` (like a region, output region) is finished in the worker and replaces
    the settings' target.
    """

    spec: str
    weights: str | None = None
    settings: ExplainSettings = field(default_factory=ExplainSettings)
    plane: Plane | None = None
    boxes: tuple[Box, ...] = ()
    tiling: TilingOptions | None = None
    tissue: TissueMap | None = None
    region_target: RegionTarget | None = None

    @property
    def asked(self) -> Target:
        """The target as asked, for names: the region target's, with its data still to come."""
        region = self.region_target
        if isinstance(region, LikeRegion):  # a stand-in direction: only its words are used
            return LikeEmbedding((1.0,), region.label)
        if isinstance(region, OutputMask):
            return OutputRegion(region.target_class, None, region.label)
        return self.settings.target


@dataclass(frozen=True)
class RegionResult:
    """The explanation of one box, placed in level-0 pixels of the image plane.

    ``settings`` are those it was explained with, its target finished (an embedding, a mask).
    """

    box: Box
    explanation: Explanation
    stride: tuple[float, float]
    origin: tuple[float, float]
    level: int
    settings: ExplainSettings = field(default_factory=ExplainSettings)

    @classmethod
    def on_crop(
        cls,
        box: Box,
        explanation: Explanation,
        crop_origin: tuple[float, float],
        downsample: tuple[float, float],
        level: int,
        settings: ExplainSettings | None = None,
    ) -> RegionResult:
        """Place an explanation of a crop read at ``level`` on level-0 pixels.

        The crop's top-left pixel is ``crop_origin`` (level 0) and each of its pixels spans
        ``downsample`` level-0 pixels; the explanation's own stride and origin are in crop
        pixels. ``settings``: those it was explained with (default: the defaults).
        """
        pairs = zip(explanation.stride, explanation.origin, crop_origin, downsample, strict=True)
        stride, origin = zip(*((f * d, o + e * d) for f, e, o, d in pairs), strict=True)
        settings = settings or ExplainSettings()
        return cls(box, explanation, tuple(stride), tuple(origin), level, settings)

    @property
    def placed(self) -> PlacedMap:
        """The map where it lies: level-0 pixels per cell and of its first cell's corner."""
        return PlacedMap(np.asarray(self.explanation.cam, np.float32), self.stride, self.origin)

    @property
    def label(self) -> str:
        """``"<class> p=<probability>"`` (or ``"<prompt> similarity <s>"``) for the result line."""
        found = self.explanation
        score = score_text(self.settings.target, found.scores[0], found.probabilities[0])
        return f"{found.target_names[0]} {score}".strip()


@dataclass(frozen=True)
class JobOutcome:
    """Results of every region, or the user-facing reason the job stopped.

    ``warnings``: what the user should know about results that were made (e.g. scale).
    """

    results: tuple[RegionResult | TiledResult, ...] = ()
    error: str | None = None
    seconds: float = 0.0
    tissue: TissueMap | None = None
    warnings: tuple[str, ...] = ()

    def summary(self, shown: int = 3) -> str:
        """Class and probability of the first ``shown`` regions, and the time taken."""
        parts = [result.label for result in self.results[:shown]]
        if len(self.results) > shown:
            parts.append(f"+{len(self.results) - shown} more")
        return f"{'; '.join(parts)} ({self.seconds:.1f} s)"


def explain_box(loaded: LoadedModel, job: ExplainJob, box: Box) -> RegionResult:
    """Explain one box of ``job.plane``, read at the model's resolution (:func:`plane_sampling`).

    An output region gives the crop the part of its mask the crop holds.
    """
    from napari_gradcam.core.explain.pipeline import explain

    level, resample = plane_sampling(job.plane, loaded.card.mpp)
    crop = read_crop(job.plane, box, level, resample)
    settings = job.settings
    if isinstance(job.region_target, OutputMask):
        settings = settings.replace(target=job.region_target.on_crop(crop, box.label))
    explanation = explain(loaded, crop.pixels, settings)
    return RegionResult.on_crop(box, explanation, crop.origin, crop.downsample, level, settings)


def run_job(job: ExplainJob) -> Generator[Any, None, JobOutcome]:
    """Load the model, then explain each box; yield events, return the outcome."""
    start = time.perf_counter()
    total = len(job.boxes) + 1
    try:
        loaded = yield from load_model_step(job.spec, job.weights, total)
    except USER_ERRORS as err:
        return JobOutcome(error=f"Could not load the model {job.spec!r}: {err}")
    if job.plane is None:
        return JobOutcome(seconds=time.perf_counter() - start)
    results = []
    try:
        job = yield from embed_reference(loaded, job)
        wanted = job.tiling is not None and job.tiling.tissue
        tissue = (job.tissue or find_tissue(job.plane)) if wanted else None
        for index, box in enumerate(job.boxes):
            results.append((yield from explain_region(loaded, job, box, index, tissue)))
            yield Progress(index + 2, total, f"explained region {index + 1}/{len(job.boxes)}")
    except USER_ERRORS as err:
        where = job.boxes[len(results)].label if len(results) < len(job.boxes) else "image"
        return JobOutcome(error=f"Could not explain the {where}: {err}")
    warnings = [
        warning
        for result in results
        if isinstance(result, RegionResult) and (warning := scale_warning(loaded, result))
    ]
    seconds = time.perf_counter() - start
    return JobOutcome(tuple(results), seconds=seconds, tissue=tissue, warnings=tuple(warnings))


def embed_reference(loaded: LoadedModel, job: ExplainJob) -> Generator[Any, None, ExplainJob]:
    """The job with a "like a region" target embedded (the region read and embedded once)."""
    region = job.region_target
    if not isinstance(region, LikeRegion):
        return job
    yield Progress(1, len(job.boxes) + 1, f"embedding the region {region.label!r}")
    embedding = region.embed(loaded, job.plane)
    return replace(job, settings=job.settings.replace(target=embedding), region_target=None)


def explain_region(
    loaded: LoadedModel, job: ExplainJob, box: Box, index: int, tissue: TissueMap | None
) -> Generator[Any, None, RegionResult | TiledResult]:
    """Explain one box: tile by tile when tiling is on and it is larger than the model input."""
    if job.tiling is not None:
        settings = job.settings
        plan = plan_region(loaded, job.plane, box, settings, job.tiling, tissue)
        if plan is not None:
            return (yield from run_tiles(loaded, plan, box, index, job.tiling))
    return explain_box(loaded, job, box)


def scale_warning(loaded: LoadedModel, result: RegionResult) -> str | None:
    """A warning when a region much larger than the model input went in as one piece.

    A model trained on small tiles sees a whole image at a scale it never learned, so its
    class and map may mean little; tiling (or a smaller region) keeps its scale. A
    segmentation model scores every pixel of any size: no warning.
    """
    size = loaded.card.input_size
    crop = result.explanation.input_shape
    if size is None or len(crop) < 2 or loaded.card.output == "dense":
        return None
    ratio = max(c / s for c, s in zip(crop[-2:], size, strict=True))
    if ratio < SCALE_WARNING_RATIO:
        return None
    return (
        f"{result.box.label}: the model takes {size[0]}x{size[1]} px inputs and was given the "
        f"whole {crop[-2]}x{crop[-1]} px region in one piece ({ratio:.0f} times larger); at that "
        'scale its answer may mean little. Tick "tile large regions" or explain a smaller '
        "region."
    )
