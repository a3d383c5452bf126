"""The model's answer for annotated regions, computed in a background thread.

The region's bounding box is read from the image at the pyramid level closest to the model's
resolution, grown to the model's input size when smaller, and scored for the heatmap's target:
the probability of its class (or classes), or its similarity to the heatmap's prompt or
reference region. Results are cached per (model, target, image plane, box), so only moved or
new shapes are computed again. torch is imported only in the worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from napari.layers import Image

from napari_gradcam._napari.jobs import USER_ERRORS, JobHooks, JobRunner
from napari_gradcam._napari.plane import Plane, plane_sampling, read_crop
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.regions import Box
from napari_gradcam._napari.target_words import is_similarity
from napari_gradcam.core.regions.region_stats import PixelBox, expand_box
from napari_gradcam.core.targets import OutputRegion, Target


@dataclass(frozen=True)
class MapModel:
    """Which model and target a heatmap explained (from its metadata).

    ``target`` is a class index or name (None, a map of each tile's predicted class, asks
    for the class the model predicts for the region), or the map's classes, prompt or
    reference region.
    """

    spec: str
    weights: str | None
    target: Target

    @classmethod
    def of(cls, heatmap: Image) -> MapModel | None:
        """Return the model of a heatmap made by the Grad-CAM widget, else None.

        A dense output region's map scores that region only (its mask is not kept): None.
        """
        record = HeatmapRecord.of(heatmap)
        if record is None or isinstance(record.settings.target, OutputRegion):
            return None
        target = record.target_index if record.target_index is not None else record.settings.target
        return cls(record.spec, record.weights, target)


def box_probabilities(model: MapModel, plane: Plane, boxes: list[PixelBox]) -> dict:
    """Return ``{box: answer}`` for boxes of level-0 pixels of ``plane``.

    The answer is the probability of ``model.target``, or its similarity where it has no
    probability (a prompt, a reference region).
    """
    from napari_gradcam.core.explain.predict import predict
    from napari_gradcam.models.cache import cached_model

    loaded = cached_model(model.spec, model.weights)
    level, resample = plane_sampling(plane, loaded.card.mpp)
    pixel_size = [d * resample for d in plane.downsamples[level]]
    input_size = loaded.card.input_size or (1, 1)
    min_size = [math.ceil(n * d) for n, d in zip(input_size, pixel_size, strict=True)]
    probabilities = {}
    for box in boxes:
        y0, x0, y1, x1 = expand_box(box, min_size, plane.shape)
        crop = read_crop(plane, Box(y0, x0, y1, x1), level, resample)
        found = predict(loaded, crop.pixels, target=model.target)
        probability = float(found.target_probability[0])
        probabilities[box] = (
            probability if math.isfinite(probability) else float(found.logits[0, 0])
        )
    return probabilities


class RegionProbabilities:
    """Probabilities of boxes, looked up at once (NaN while pending) and computed in a thread.

    ``on_ready`` is called on the main thread when new probabilities arrive, ``on_error``
    with a message when the model cannot classify the regions.
    """

    def __init__(self, on_ready: Callable[[], None], on_error: Callable[[str], None]) -> None:
        self._on_ready = on_ready
        self._on_error = on_error
        self._cache: dict[tuple, float] = {}
        self._pending: dict[tuple, tuple[MapModel, Plane, PixelBox]] = {}
        self._runner = JobRunner(on_running=self._on_running)
        self._closed = False

    def close(self) -> None:
        """Drop what is queued and the results still on their way."""
        self._closed = True
        self._pending.clear()
        self._runner.halt("the annotations dock was closed")

    @property
    def running(self) -> bool:
        """Whether a computation is under way."""
        return self._runner.running

    def lookup(self, model: MapModel, plane_key: tuple, plane: Plane, box: PixelBox) -> float:
        """Return the cached probability, or NaN and queue the box for :meth:`start`."""
        key = (model, plane_key, box)
        if key in self._cache:
            return self._cache[key]
        self._pending[key] = (model, plane, box)
        return math.nan

    def start(self) -> None:
        """Compute the queued boxes in a background thread (one thread at a time)."""
        if self.running or not self._pending or self._closed:
            return
        jobs, self._pending = self._pending, {}
        self._runner.start(_compute, jobs, hooks=JobHooks(returned=self._on_returned))

    def _on_returned(self, outcome: tuple[dict, str | None]) -> None:
        results, error = outcome
        self._cache.update(results)
        if error:
            self._on_error(error)
        self._on_ready()

    def _on_running(self, running: bool) -> None:
        if not running:
            self.start()  # what was queued meanwhile


def _compute(jobs: dict[tuple, tuple[MapModel, Plane, PixelBox]]) -> tuple[dict, str | None]:
    """Classify every queued box; on a model error, cache NaN and return the message."""
    results: dict[tuple, float] = {}
    by_model: dict[tuple, list[tuple]] = {}
    for key, (model, plane, _box) in jobs.items():
        by_model.setdefault((model, id(plane)), []).append(key)
    for keys in by_model.values():
        model, plane, _box = jobs[keys[0]]
        try:
            found = box_probabilities(model, plane, [jobs[key][2] for key in keys])
        except USER_ERRORS as err:
            results.update(dict.fromkeys(keys, math.nan))
            what = "similarity" if is_similarity(model.target) else "class probability"
            return results, f"cannot compute the {what} with {model.spec!r}: {err}"
        results.update({key: found[jobs[key][2]] for key in keys})
    return results, None
