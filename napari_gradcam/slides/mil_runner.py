"""Explain a slide-level prediction: embed its tiles, score them, paint the scores, write outputs.

:func:`run_slide_mil` is the one driver of a slide model's run (embed, score, paint) for the MIL
dock and the ``slide --mil`` command; :func:`explain_slide_mil` drives it and writes the
command's maps, tables, drill-downs and summary.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gradcam.core.mil.drill_down import drill_down
from napari_gradcam.core.output_files import save_json, save_png
from napari_gradcam.core.overlay import overlay
from napari_gradcam.core.progress import Progress, relay
from napari_gradcam.core.regions.region_stats import PlacedMap
from napari_gradcam.core.tiling.grid import MIN_TISSUE
from napari_gradcam.models.slide_model import SlideModel
from napari_gradcam.slides.embeddings import SlideEmbeddings, embed_slide, tile_pixels
from napari_gradcam.slides.mil_outputs import (
    MilOutputs,
    score_attrs,
    score_map,
    write_score_zarr,
    write_tile_csv,
    write_tile_geojson,
)
from napari_gradcam.slides.mil_scores import (
    GRADIENT,
    SIGNED,
    TileScores,
    faithfulness,
    score_tiles,
)
from napari_gradcam.slides.outputs import replace_folder

if TYPE_CHECKING:
    from distributed import Client

    from napari_gradcam.core.explain.explanation import Explanation
    from napari_gradcam.slides.lazy_slide import Slide


@dataclass(frozen=True)
class MilJob:
    """How to explain slides with a slide model (the command line's options)."""

    card: str
    target: int | str | None = None
    overlap: float = 0.0
    min_tissue: float = MIN_TISSUE
    batch_size: int = 64
    percentile: bool = False
    blur: float = 0.0
    baseline: str = "zero"
    top_k: int = 4
    cache_dir: str | None = None
    overwrite: bool = False


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


def run_slide_mil(
    slide: Slide,
    model: SlideModel,
    job: MilJob,
    *,
    shown: tuple[str, ...] | None = None,
    client: Client | None = None,
) -> Generator[Progress, None, MilResult]:
    """Embed the slide's tiles (cached), score them and paint the scores; yield each step.

    ``shown``: the scores to paint, in this order (default: all); ``client``: embed on this Dask
    cluster's workers.
    """
    start = time.perf_counter()
    embedding = embed_slide(
        slide,
        model,
        card=job.card,
        overlap=job.overlap,
        min_tissue=job.min_tissue,
        batch_size=job.batch_size,
        cache_dir=job.cache_dir,
        client=client,
    )
    tiles = yield from relay(
        embedding, lambda step: Progress(step.step, step.total + 2, step.message)
    )
    count = len(tiles.embeddings)
    yield Progress(count, count + 2, f"scoring {count} tiles")
    scores = score_tiles(
        model, tiles.embeddings, tiles.coords, target=job.target, baseline=job.baseline
    )
    yield Progress(count + 1, count + 2, "painting the tile maps")
    values = scores.percentiles() if job.percentile else scores.scores
    maps = []
    for name in values if shown is None else shown:
        painted, stride, origin = score_map(tiles, values[name], job.blur)
        maps.append(ScoreMap(name, PlacedMap(painted, stride, origin), SIGNED[name]))
    seconds = time.perf_counter() - start
    return MilResult(slide, model, tiles, scores, tuple(maps), seconds)


def explain_slide_mil(
    slide: Slide,
    model: SlideModel,
    job: MilJob,
    outputs: MilOutputs,
    *,
    client: Client | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """Run the slide model on ``slide`` (:func:`run_slide_mil`) and write every output.

    Yields the run's steps; returns the summary (also written as JSON).
    """
    start = time.perf_counter()
    result = yield from run_slide_mil(slide, model, job, client=client)
    tiles, scores = result.tiles, result.scores
    facts = _facts(slide, model, tiles, scores, job)
    for shown in result.maps:
        placed = shown.placed
        attrs = score_attrs(facts, shown.name, placed.cam, (placed.stride, placed.origin))
        write_score_zarr(outputs.heatmap(shown.name), placed.cam, attrs, job.overwrite)
    columns = {**scores.scores, **{f"{k}_percentile": v for k, v in scores.percentiles().items()}}
    write_tile_csv(outputs.tiles, tiles, columns)
    write_tile_geojson(outputs.geojson, tiles, columns)
    drilled = write_drill_downs(slide, model, tiles, scores, outputs.drill, job)
    summary = {
        **facts,
        "faithfulness": faithfulness(model, tiles.embeddings, scores),
        "drill_down": drilled,
        "seconds": round(time.perf_counter() - start, 3),
    }
    save_json(outputs.summary, summary)
    return summary


def _facts(
    slide: Slide, model: SlideModel, tiles: SlideEmbeddings, scores: TileScores, job: MilJob
) -> dict[str, Any]:
    probabilities = np.exp(scores.logits - scores.logits.max())
    probabilities /= probabilities.sum()
    return {
        "slide": slide.name,
        "slide_shape": list(slide.shape),
        "mpp": slide.mpp,
        "mpp_source": slide.mpp_source,
        "model": model.name,
        "card": str(job.card),
        "classes": list(model.classes),
        "logits": [float(v) for v in scores.logits],
        "probabilities": [float(v) for v in probabilities],
        "target": model.classes[scores.target],
        "level": tiles.level,
        "tiles": len(tiles.embeddings),
        "embeddings_cached": tiles.cached,
        "embeddings_key": tiles.key,
        "ig_completeness_error": scores.ig_completeness_error,
        "percentile": job.percentile,
        "blur_tiles": job.blur,
        "overlap": job.overlap,
    }


def write_drill_downs(
    slide: Slide,
    model: SlideModel,
    tiles: SlideEmbeddings,
    scores: TileScores,
    folder: Path,
    job: MilJob,
) -> list[dict[str, Any]]:
    """Drill-down PNGs of the ``top_k`` tiles for and against the class (by grad x embedding)."""
    if job.top_k < 1:
        return []
    values = scores.scores[GRADIENT]
    picks = top_tiles(values, job.top_k)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    records = []
    try:
        for rank, (side, index) in enumerate(picks):
            name = f"{rank:02d}_{side}_tile{index}.png"
            pixels, explanation = drill_tile(slide, model, tiles, scores, index, side)
            save_png(temporary / name, overlay(pixels, explanation.cam, explanation.stride))
            records.append(
                {"file": name, "tile": index, "side": side, "score": float(values[index])}
            )
        replace_folder(temporary, folder, job.overwrite)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return records


def top_tiles(values: np.ndarray, k: int, signed: bool = True) -> list[tuple[str, int]]:
    """The ``k`` tiles that pushed most for the class, then the ``k`` most against it.

    Each as ``(side, tile index)``, the strongest first; a side holds only tiles of its sign.
    An unsigned score (attention) gives its ``k`` highest tiles, on the side ``"top"``.
    """
    order = np.argsort(-values, kind="stable")
    if not signed:
        return [("top", int(i)) for i in order[:k]]
    picks = [("for", int(i)) for i in order[:k] if values[i] > 0]
    return picks + [("against", int(i)) for i in order[::-1][:k] if values[i] < 0]


def drill_tile(
    slide: Slide,
    model: SlideModel,
    tiles: SlideEmbeddings,
    scores: TileScores,
    index: int,
    side: str,
) -> tuple[np.ndarray, Explanation]:
    """A tile's pixels and the drill-down map of those that pushed the slide logit.

    ``side`` ``"against"`` maps the pixels that pushed against the class; any other side
    those that pushed for it. The map's stride is in the tile's (sampled) pixels, see
    ``SlideEmbeddings.pixel_size``.
    """
    pixels = tile_pixels(slide, tiles, index)
    direction = scores.gradient[index] * (-1.0 if side == "against" else 1.0)
    box = tiles.boxes[index]
    return pixels, drill_down(model.encoder, pixels, direction, origin=(box[0], box[1]))
