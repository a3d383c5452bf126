"""The background job behind the Explain button: load (cached) model, explain each region.

Runs in a napari thread worker. It never touches the viewer: it yields :class:`Progress`
and returns a :class:`JobOutcome` that the widget applies on the main thread. torch is
imported here only when the job runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from napari_gradcam._napari.explain.tiled_job import (
    TiledResult,
    TilingOptions,
    find_tissue,
    plan_region,
    run_tiles,
)
from napari_gradcam._napari.plane import Plane, choose_level, read_crop
from napari_gradcam._napari.progress import ModelInfo, Progress
from napari_gradcam._napari.regions import Box

if TYPE_CHECKING:
    from napari_gradcam.core.explain.explanation import Explanation
    from napari_gradcam.core.tiling.slide_tissue import TissueMap
    from napari_gradcam.models import LoadedModel

__all__ = ["ExplainJob", "JobOutcome", "ModelInfo", "Progress", "RegionResult", "run_job"]

USER_ERRORS = (ValueError, OSError, RuntimeError, ImportError, SyntaxError)
"""Errors that mean "fix the input" (bad spec, file, region or pixels), not a bug."""

_MODELS: dict[tuple[str, str | None], tuple[tuple, LoadedModel, tuple[tuple[str, str], ...]]] = {}
"""Per ``(spec, weights)``: the files' stamps when loaded, the model and its layers."""
_MODELS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExplainJob:
    """What to explain; ``plane=None`` only loads the model.

    With ``tiling``, boxes larger than the model input are explained tile by tile (with the
    ``tissue`` already found for this image, else found once for the job).
    """

    spec: str
    weights: str | None = None
    method: str = "gradcam"
    layer: str | None = None
    target: str | None = None
    tta: bool = False
    bfloat16: bool = False
    plane: Plane | None = None
    boxes: tuple[Box, ...] = ()
    tiling: TilingOptions | None = None
    tissue: TissueMap | None = None


@dataclass(frozen=True)
class RegionResult:
    """The explanation of one box, placed in level-0 pixels of the image plane."""

    box: Box
    explanation: Explanation
    stride: tuple[float, float]
    origin: tuple[float, float]
    level: int

    @property
    def label(self) -> str:
        """``"<class> p=<probability>"`` for the result line."""
        return f"{self.explanation.target_names[0]} p={self.explanation.probabilities[0]:.2f}"


@dataclass(frozen=True)
class JobOutcome:
    """Results of every region, or the user-facing reason the job stopped."""

    results: tuple[RegionResult | TiledResult, ...] = ()
    error: str | None = None
    seconds: float = 0.0
    tissue: TissueMap | None = None

    def summary(self, shown: int = 3) -> str:
        """Class and probability of the first ``shown`` regions, and the time taken."""
        parts = [result.label for result in self.results[:shown]]
        if len(self.results) > shown:
            parts.append(f"+{len(self.results) - shown} more")
        return f"{'; '.join(parts)} ({self.seconds:.1f} s)"


def load_cached(spec: str, weights: str | None) -> tuple[LoadedModel, tuple[tuple[str, str], ...]]:
    """Load a model and its candidate layers, as (label, name) pairs, once per ``(spec, weights)``.

    The model is loaded again when its files (weights, TorchScript or factory file, card)
    changed on disk since, e.g. after retraining into the same weights file.
    """
    from napari_gradcam.core.explain.capture import candidate_layouts
    from napari_gradcam.models import load_model

    key, stamps = (spec, weights), file_stamps(spec, weights)
    with _MODELS_LOCK:
        if key not in _MODELS or _MODELS[key][0] != stamps:
            loaded = load_model(spec, weights=weights)
            layouts = candidate_layouts(loaded).items()
            labelled = tuple((f"{name} ({layout.label()})", name) for name, layout in layouts)
            _MODELS[key] = (stamps, loaded, labelled)
        return _MODELS[key][1:]


def file_stamps(spec: str, weights: str | None) -> tuple:
    """(path, size, modification time) of the files a model spec reads, where they exist."""
    candidates = [spec, spec.rpartition(":")[0], weights]
    paths = [Path(c) for c in candidates if c]
    paths += [path.with_suffix(".json") for path in paths]
    stamps = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        stamps.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(stamps)


def explain_box(loaded: LoadedModel, job: ExplainJob, box: Box, level: int) -> RegionResult:
    """Explain one box of ``job.plane`` read at pyramid ``level``."""
    from napari_gradcam.core.explain.pipeline import explain

    crop = read_crop(job.plane, box, level)
    explanation = explain(
        loaded, crop.pixels, method=job.method, layer=job.layer, target=job.target,
        tta=job.tta, bfloat16=job.bfloat16,
    )  # fmt: skip
    stride = tuple(f * d for f, d in zip(explanation.stride, crop.downsample, strict=True))
    return RegionResult(box, explanation, stride, crop.origin, level)


def run_job(job: ExplainJob) -> Generator[Progress, None, JobOutcome]:
    """Load the model, then explain each box; yield progress, return the outcome."""
    start = time.perf_counter()
    total = len(job.boxes) + 1
    yield Progress(0, total, f"loading model {job.spec!r}")
    try:
        loaded, layers = load_cached(job.spec, job.weights)
    except USER_ERRORS as err:
        return JobOutcome(error=f"Could not load the model {job.spec!r}: {err}")
    info = ModelInfo(job.spec, job.weights, tuple(loaded.card.classes), layers)
    yield Progress(1, total, "model loaded", info)
    if job.plane is None:
        return JobOutcome(seconds=time.perf_counter() - start)
    results = []
    try:
        wanted = job.tiling is not None and job.tiling.tissue
        tissue = (job.tissue or find_tissue(job.plane)) if wanted else None
        for index, box in enumerate(job.boxes):
            results.append((yield from explain_region(loaded, job, box, index, tissue)))
            yield Progress(index + 2, total, f"explained region {index + 1}/{len(job.boxes)}")
    except USER_ERRORS as err:
        where = job.boxes[len(results)].label if len(results) < len(job.boxes) else "image"
        return JobOutcome(error=f"Could not explain the {where}: {err}")
    return JobOutcome(tuple(results), seconds=time.perf_counter() - start, tissue=tissue)


def explain_region(
    loaded: LoadedModel, job: ExplainJob, box: Box, index: int, tissue: TissueMap | None
) -> Generator[Progress, None, RegionResult | TiledResult]:
    """Explain one box: tile by tile when tiling is on and it is larger than the model input."""
    if job.tiling is not None:
        from napari_gradcam.core.tiling.tiled import TileSettings

        settings = TileSettings(job.method, job.layer, job.target, job.tta, job.bfloat16)
        plan = plan_region(loaded, job.plane, box, settings, job.tiling, tissue)
        if plan is not None:
            return (yield from run_tiles(loaded, plan, box, index, job.tiling, tissue))
    return explain_box(loaded, job, box, choose_level(job.plane, loaded.card.mpp))
