"""What the slide runner records: CSV rows per tile, the heatmap's attributes, the summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gradcam.core.explain.method_options import options_to_facts
from napari_gradcam.core.targets import describe_target, target_to_metadata
from napari_gradcam.core.tiling.tile_stats import FACTS
from napari_gradcam.core.tiling.tiled import TilePlan, TileResults
from napari_gradcam.slides.outputs import SlideOutputs, heatmap_placement

if TYPE_CHECKING:
    from napari_gradcam.core.card import ModelCard
    from napari_gradcam.slides.lazy_slide import Slide


OUTSIDE = "outside region"
"""The status of a tile skipped because the target's output region does not reach it."""


class TileRows:
    """CSV rows (see ``CSV_COLUMNS``) of every tile, in grid order.

    Explained tiles are written as their results arrive, the skipped tiles between them as
    ``skipped`` with blank results.

    Parameters
    ----------
    plan : TilePlan
        The tiles.
    class_name : callable
        Class index to name (the model card's).
    """

    def __init__(self, plan: TilePlan, class_name: Callable[[int], str]) -> None:
        self.plan = plan
        self.class_name = class_name
        self.boxes = np.round(plan.boxes(), 3).tolist()
        self.cursor = 0

    def explained(self, results: TileResults) -> list[list[Any]]:
        """Rows up to the last tile of ``results`` (results arrive in grid order)."""
        columns = [_significant(results.facts[name]) for name in FACTS]
        rows = []
        for position, index in enumerate(results.indices.tolist()):
            rows += self._skipped(index)
            facts = [column[position] for column in columns]
            predicted = self.class_name(int(facts[0])) if facts[0] >= 0 else ""
            target = results.names[position] if results.names else self.class_name(int(facts[3]))
            rows.append([*self._fixed(index, "explained"), predicted, *facts, target])
            self.cursor = index + 1
        return rows

    def rest(self) -> list[list[Any]]:
        """Rows of the skipped tiles after the last explained one."""
        rows = self._skipped(self.plan.grid.n_tiles)
        self.cursor = self.plan.grid.n_tiles
        return rows

    def _skipped(self, stop: int) -> list[list[Any]]:
        blank = [""] * (len(FACTS) + 2)
        outside = self.plan.in_region
        return [
            [*self._fixed(i, "skipped" if outside is None or outside[i] else OUTSIDE), *blank]
            for i in range(self.cursor, stop)
        ]

    def _fixed(self, index: int, status: str) -> list[Any]:
        return [index, status, *self.boxes[index], round(float(self.plan.tissue[index]), 4)]


def _significant(values: np.ndarray, digits: int = 5) -> list[Any]:
    """Values as Python numbers, floats to ``digits`` significant digits."""
    values = np.asarray(values)
    if values.dtype.kind != "f":
        return values.tolist()
    return [float(f"{v:.{digits}g}") for v in values.tolist()]


def heatmap_attrs(
    slide: Slide, plan: TilePlan, model: str, card: ModelCard, maximum: float
) -> dict[str, Any]:
    """The heatmap's provenance and placement on the slide (level-0 pixels, µm when known).

    ``target`` is the target's metadata (``target_to_metadata``), ``target_description`` says
    it in words with the model ``card``'s class names.
    """
    return {
        "kind": "heatmap",
        "slide": slide.name,
        "slide_shape": list(slide.shape),
        "mpp": slide.mpp,
        "mpp_source": slide.mpp_source,
        "model": model,
        "method": plan.settings.method,
        "tta": plan.settings.tta,
        "bfloat16": plan.settings.bfloat16,
        **(options_to_facts(plan.settings.options) if plan.settings.options else {}),
        "layer": plan.settings.layer,
        "target": target_to_metadata(plan.settings.target),
        "target_description": describe_target(plan.settings.target, card),
        "level": plan.level,
        "resample": plan.view.resample,
        "stride": list(plan.stride),
        "origin": list(plan.origin),
        "shape": list(plan.grid.map_shape),
        "placement": heatmap_placement(plan.stride, plan.origin, slide.mpp),
        "contrast_limits": [0.0, maximum if maximum > 0 else 1.0],
        "normalisation": "one for the whole slide: raw values shown over [0, map maximum]",
    }


def run_summary(
    slide: Slide,
    plan: TilePlan,
    job: Any,
    attrs: dict[str, Any],
    outputs: SlideOutputs,
    seconds: float,
) -> dict[str, Any]:
    """The JSON summary of one slide's run (``job`` is the runner's dataclass of options)."""
    return {
        "slide": str(slide.path or slide.name),
        "job": {**vars(job), "settings": job.settings.to_metadata()},
        "tiles": {
            "total": plan.grid.n_tiles,
            "explained": len(plan.explained),
            "skipped": plan.grid.n_tiles - len(plan.explained) - plan.outside_region,
            "outside_region": plan.outside_region,
            "size": list(plan.grid.tile),
            "step": list(plan.grid.step),
        },
        "heatmap": attrs,
        "seconds": round(seconds, 3),
        "outputs": {key: path.name for key, path in asdict(outputs).items()},
    }
