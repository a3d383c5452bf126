"""What ``napari-gradcam similarity`` writes per slide, each file whole or not at all.

:func:`explain_slide_similarity` drives the map (``slides.similarity_map``) and writes:

* ``<stem>.similarity.zarr``: each tile's similarity painted over its tile, an OME-Zarr placed
  on the slide like the MIL tile maps (``slides.mil_outputs``); cells without a tile hold
  ``similarity_map.NO_TILE``;
* ``<stem>.similarity.tiles.csv``: one row per tile with its level-0 box and its similarity;
* ``<stem>.similarity.json``: the target, the model, the tiles and the top tiles;
* ``<stem>.similarity.drill/<rank>_tile<i>.png``: Grad-CAM of the target on the most similar
  tiles.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_gradcam.core.output_files import check_outputs, output_stem, save_json, save_png
from napari_gradcam.core.overlay import overlay
from napari_gradcam.core.progress import Progress
from napari_gradcam.core.targets import Prompt
from napari_gradcam.slides.mil_outputs import write_score_zarr, write_tile_csv
from napari_gradcam.slides.outputs import SLIDE_NAME_SUFFIXES, heatmap_placement, replace_folder
from napari_gradcam.slides.similarity_map import (
    NO_TILE,
    SimilarityJob,
    SimilarityMap,
    TileDrill,
    drill_down_tile,
    similarity_slide_map,
)

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.slides.lazy_slide import Slide


@dataclass(frozen=True)
class SimilarityOutputs:
    """The output paths of one slide's similarity map."""

    folder: Path
    stem: str

    @classmethod
    def for_slide(cls, slide: str | Path, out: Path) -> SimilarityOutputs:
        """Outputs named after the slide's file or folder name, less a slide suffix, in ``out``."""
        return cls(out, output_stem(Path(slide), SLIDE_NAME_SUFFIXES, "slide"))

    @property
    def heatmap(self) -> Path:
        """The tile map's zarr."""
        return self.folder / f"{self.stem}.similarity.zarr"

    @property
    def tiles(self) -> Path:
        """The per-tile CSV."""
        return self.folder / f"{self.stem}.similarity.tiles.csv"

    @property
    def summary(self) -> Path:
        """The JSON summary."""
        return self.folder / f"{self.stem}.similarity.json"

    @property
    def drill(self) -> Path:
        """The folder of drill-down PNGs."""
        return self.folder / f"{self.stem}.similarity.drill"

    def paths(self) -> list[Path]:
        """Every output path."""
        return [self.heatmap, self.tiles, self.summary, self.drill]


def plan_similarity_outputs(
    slides: list[Path], out: Path, overwrite: bool
) -> list[SimilarityOutputs]:
    """Outputs per slide; refuse inputs as outputs, clashes and (unasked) overwrites."""
    plans = [SimilarityOutputs.for_slide(slide, out) for slide in slides]
    check_outputs([plan.paths() for plan in plans], "slides", overwrite, slides)
    return plans


def similarity_facts(result: SimilarityMap) -> dict[str, Any]:
    """The run's provenance: slide, model, target and tiles."""
    slide, target, tiles = result.slide, result.target, result.tiles
    return {
        "slide": slide.name,
        "slide_shape": list(slide.shape),
        "mpp": slide.mpp,
        "mpp_source": slide.mpp_source,
        "model": result.model.card.name,
        "spec": result.model.spec,
        "target": result.label,
        "target_kind": type(target).__name__,
        "prompts": list(target.texts) if isinstance(target, Prompt) else [],
        "template": target.template if isinstance(target, Prompt) else None,
        "level": tiles.level,
        "tiles": len(tiles.embeddings),
        "embeddings_cached": tiles.cached,
        "embeddings_key": tiles.key,
    }


def similarity_attrs(result: SimilarityMap, facts: dict[str, Any]) -> dict[str, Any]:
    """Placement, provenance and display range of the tile map's zarr."""
    placed = result.placed
    return {
        **facts,
        "kind": "heatmap",
        "method": f"similarity to {result.label}",
        "signed": False,
        "stride": list(placed.stride),
        "origin": list(placed.origin),
        "shape": list(placed.cam.shape),
        "placement": heatmap_placement(placed.stride, placed.origin, facts.get("mpp")),
        "contrast_limits": list(result.limits()),
        "no_tile": NO_TILE,
        "normalisation": "raw cosine similarity of each tile's embedding with the target",
    }


def write_similarity_outputs(
    result: SimilarityMap, drills: list[TileDrill], outputs: SimilarityOutputs, overwrite: bool
) -> dict[str, Any]:
    """Write the map, the tile CSV, the drill-down PNGs and the summary; return the summary."""
    facts = similarity_facts(result)
    write_score_zarr(outputs.heatmap, result.placed.cam, similarity_attrs(result, facts), overwrite)
    write_tile_csv(outputs.tiles, result.tiles, {"similarity": result.scores})
    drilled = write_drill_pngs(drills, result.scores, outputs.drill, overwrite)
    scores = result.scores
    summary = {
        **facts,
        "similarity": {
            "min": float(scores.min()),
            "median": float(np.median(scores)),
            "max": float(scores.max()),
        },
        "drill_down": drilled,
        "seconds": round(result.seconds, 3),
    }
    save_json(outputs.summary, summary)
    return summary


def write_drill_pngs(
    drills: list[TileDrill], scores: np.ndarray, folder: Path, overwrite: bool
) -> list[dict[str, Any]]:
    """One overlay PNG per drilled tile, most similar first; the folder appears whole."""
    if not drills:
        return []
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    records = []
    try:
        for rank, drill in enumerate(drills):
            name = f"{rank:02d}_tile{drill.tile}.png"
            explanation = drill.explanation
            save_png(temporary / name, overlay(drill.pixels, explanation.cam, explanation.stride))
            records.append({"file": name, "tile": drill.tile, "score": float(scores[drill.tile])})
        replace_folder(temporary, folder, overwrite)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return records


def explain_slide_similarity(
    slide: Slide, model: LoadedModel, job: SimilarityJob, outputs: SimilarityOutputs
) -> Generator[Progress, None, dict[str, Any]]:
    """Map the slide's similarity (:func:`similarity_slide_map`) and write every output.

    Yields the run's steps; returns the summary (also written as JSON).
    """
    result = yield from similarity_slide_map(slide, model, job)
    drills = [drill_down_tile(result, index) for index in result.top(job.top_k)]
    return write_similarity_outputs(result, drills, outputs, job.overwrite)
