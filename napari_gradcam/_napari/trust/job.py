"""The background jobs of the trust & compare dock: they re-read a heatmap's crop and run core.

Each job runs in a thread worker (``jobs.JobRunner``): it never touches the viewer, yields
``core.progress.Progress`` steps (the trust report's are ``core.trust.report``'s own) and
returns a :class:`TrustOutcome` that the dock turns into layers and text on the main thread.
torch is imported only when a job runs.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from napari_gradcam._napari.jobs import USER_ERRORS, load_model_step
from napari_gradcam._napari.plane import Crop, Plane, plane_sampling, read_crop
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.regions import Box
from napari_gradcam.core.progress import Progress
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.user_state import unexpected_error_message

if TYPE_CHECKING:
    from napari_gradcam.core.explain.explanation import Explanation
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.core.trust.contrast import ClassContrast
    from napari_gradcam.core.trust.features import FeatureStack
    from napari_gradcam.core.trust.report import TrustReport

Kind = Literal["load", "features", "sweep", "trust", "contrast", "compare"]
MAX_TRUST_PIXELS = 1024 * 1024
"""Largest crop a trust report runs on: it takes about 70 forward passes of the crop."""


def tile_at(source: HeatmapRecord, centre: tuple[float, float]) -> HeatmapRecord:
    """Narrow a tiled heatmap's record to one tile-sized box around ``centre``.

    The model was run on tiles, so a check runs on one: the box of one tile's size centred on
    ``centre`` (level-0 pixels), moved to lie inside the heatmap's region. A heatmap without a
    recorded tile size keeps its whole region.
    """
    if source.tiles is None or source.tiles.size is None:
        return source
    box = source.box
    (y0, y1), (x0, x1) = (
        _centred(c, size, low, high)
        for c, size, low, high in zip(
            centre, source.tiles.size, (box.y0, box.x0), (box.y1, box.x1), strict=True
        )
    )
    return replace(source, box=Box(y0, x0, y1, x1, f"tile at ({y0}, {x0}) of {box.label}"))


def _centred(centre: float, size: float, low: int, high: int) -> tuple[int, int]:
    """``[start, stop)`` of ``size`` around ``centre``, moved into (and cut to) ``[low, high)``."""
    start = round(centre - size / 2)
    start = max(low, min(start, high - round(size)))
    return start, min(start + round(size), high)


@dataclass(frozen=True)
class TrustJob:
    """One action of the dock on one heatmap's crop.

    ``feature_layer`` (features) defaults to the heatmap's layer; ``other`` is the class that
    a contrast subtracts; ``methods`` and ``classes`` span a comparison (``None``: predicted).
    """

    kind: Kind
    source: HeatmapRecord
    plane: Plane | None = None
    feature_layer: str | None = None
    other: str | None = None
    methods: tuple[str, ...] = ()
    classes: tuple[str | None, ...] = ()
    baseline: str = "blur"
    sanity_steps: int = 3


@dataclass(frozen=True)
class TrustOutcome:
    """What a job made, placed in level-0 pixels, or the user-facing reason it stopped."""

    kind: Kind
    crop_origin: tuple[float, float] = (0.0, 0.0)
    downsample: tuple[float, float] = (1.0, 1.0)
    tissue_fraction: float | None = None
    features: FeatureStack | None = None
    maps: tuple[Explanation, ...] = ()
    contrast: ClassContrast | None = None
    report: TrustReport | None = None
    error: str | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def blank(self) -> bool:
        """Whether the crop holds (almost) no tissue."""
        from napari_gradcam.core.tiling.tissue import MIN_TISSUE_FRACTION

        return self.tissue_fraction is not None and self.tissue_fraction < MIN_TISSUE_FRACTION


def run_trust_job(job: TrustJob) -> Generator[Any, None, TrustOutcome]:
    """Load the model, read the heatmap's crop and run the job's action.

    An unexpected error (a bug, not a bad input) is logged with its traceback and returned as
    the outcome's full message, so that the dock can show it instead of a bare "failed".
    """
    try:
        return (yield from _run(job))
    except Exception as err:  # noqa: BLE001 - logged with its traceback, shown in full
        return TrustOutcome(
            job.kind, error=unexpected_error_message(err, f"running {job.kind} in the trust dock")
        )


def _run(job: TrustJob) -> Generator[Any, None, TrustOutcome]:
    from napari_gradcam.core.tiling.tissue import tissue_fraction

    start = time.perf_counter()
    try:
        loaded = yield from load_model_step(job.source.spec, job.source.weights, 2)
    except USER_ERRORS as err:
        return TrustOutcome(job.kind, error=f"Could not load the model {job.source.spec!r}: {err}")
    if job.kind == "load" or job.plane is None:
        return TrustOutcome(job.kind, seconds=time.perf_counter() - start)
    try:
        crop = read_crop(job.plane, job.source.box, *plane_sampling(job.plane, loaded.card.mpp))
        outcome = yield from _ACTIONS[job.kind](loaded, job, crop)
    except USER_ERRORS as err:
        return TrustOutcome(job.kind, error=f"Could not run {job.kind} on the heatmap: {err}")
    return replace(
        outcome,
        notes=_tiled_notes(job.source),
        crop_origin=crop.origin,
        downsample=crop.downsample,
        tissue_fraction=tissue_fraction(crop.pixels),
        seconds=time.perf_counter() - start,
    )


def _tiled_notes(source: HeatmapRecord) -> tuple[str, ...]:
    if source.tiles is None:
        return ()
    if source.tiles.size is None:
        return ("the heatmap was stitched from tiles; this checked its region as one input",)
    return (f"checked the {source.box.label} under the view centre; pan to check another",)


def _features(loaded: LoadedModel, job: TrustJob, crop: Crop) -> Iterator[Progress]:
    from napari_gradcam.core.trust.features import feature_stack

    layer = job.feature_layer or job.source.model_layer
    yield Progress(1, 2, f"reading the activations of {layer or 'the default layer'}")
    stack = feature_stack(loaded, crop.pixels, layer=layer, target=job.source.settings.target)
    return TrustOutcome(job.kind, features=stack)


def _sweep(loaded: LoadedModel, job: TrustJob, crop: Crop) -> Iterator[Progress]:
    from napari_gradcam.core.trust.features import layer_sweep, sweep_layers

    if job.source.model_layer is None:
        raise ValueError(
            f"{job.source.settings.method} uses no layer, so a layer sweep would repeat one map; "
            "sweep a heatmap made by a layer method such as gradcam"
        )
    layers = sweep_layers(loaded)
    maps = []
    explanations = layer_sweep(
        loaded,
        crop.pixels,
        layers,
        method=job.source.settings.method,
        target=job.source.settings.target,
    )
    for index, explanation in enumerate(explanations):
        maps.append(explanation)
        yield Progress(index + 1, len(layers), f"explained at {explanation.layer}")
    return TrustOutcome(job.kind, maps=tuple(maps))


def _trust(loaded: LoadedModel, job: TrustJob, crop: Crop) -> Iterator[Progress]:
    from napari_gradcam.core.trust.report import iter_trust_report

    height, width = crop.pixels.shape[:2]
    if height * width > MAX_TRUST_PIXELS:
        raise ValueError(
            f"its region is {height} x {width} pixels; the trust report runs about 70 forward "
            "passes of it. Draw a rectangle of at most 1024 x 1024 pixels, explain it with the "
            "Grad-CAM dock and check that heatmap"
        )
    report = yield from iter_trust_report(
        loaded,
        crop.pixels,
        settings=_settings(job.source),
        sanity_steps=job.sanity_steps,
        baseline=job.baseline,
    )
    return TrustOutcome(job.kind, report=report)


def _settings(source: HeatmapRecord) -> ExplainSettings:
    """How the heatmap was made: method, layer, class and the method's options."""
    return source.settings.replace(layer=source.model_layer)


def _contrast(loaded: LoadedModel, job: TrustJob, crop: Crop) -> Iterator[Progress]:
    from napari_gradcam.core.trust.contrast import class_contrast

    yield Progress(1, 2, f"explaining {job.source.settings.target} and {job.other}")
    contrast = class_contrast(
        loaded,
        crop.pixels,
        job.source.settings.target,
        job.other,
        settings=_settings(job.source),
    )
    return TrustOutcome(job.kind, contrast=contrast)


def _compare(loaded: LoadedModel, job: TrustJob, crop: Crop) -> Iterator[Progress]:
    from napari_gradcam.core.trust.contrast import explanations_for

    total = len(job.methods) * len(job.classes)
    maps = []
    explanations = explanations_for(
        loaded, crop.pixels, job.methods, job.classes, layer=job.source.model_layer
    )
    for explanation in explanations:
        maps.append(explanation)
        yield Progress(len(maps), total, f"{explanation.method}: {explanation.target_names[0]}")
    return TrustOutcome(job.kind, maps=tuple(maps))


_ACTIONS = {
    "features": _features,
    "sweep": _sweep,
    "trust": _trust,
    "contrast": _contrast,
    "compare": _compare,
}
