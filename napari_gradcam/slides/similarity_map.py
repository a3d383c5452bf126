"""A prompt or "like this region" map over a whole slide: each tissue tile's similarity.

:func:`similarity_slide_map` is the one driver the dock and the ``similarity`` command run: it
embeds the slide's tissue tiles with the model's image tower (``slides.embeddings``, cached on
disk), turns the target into one unit direction in the embedding space (a prompt's text
embedding, cached per prompt by the model's ``TextEncoder``; or a region's embedding), scores
each tile by the cosine of its embedding with that direction and paints the scores over the
tiles like the MIL tile maps. :func:`drill_down_tile` draws the pixels of one tile that raise the
same score (Grad-CAM of the same target), placed on the slide. The command's files are written
by ``slides.similarity_outputs``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.explain.region_embedding import embed_region
from napari_gradcam.core.explain.targets import bind_target
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.progress import Progress, relay
from napari_gradcam.core.regions.region_stats import PlacedMap, expand_box
from napari_gradcam.core.targets import SIMILARITY_KINDS, LikeEmbedding, Prompt, describe_target
from napari_gradcam.core.tiling.grid import MIN_TISSUE
from napari_gradcam.core.tiling.tiled import level_view, read_tiles
from napari_gradcam.slides.embeddings import SlideEmbeddings, embed_slide, tile_pixels
from napari_gradcam.slides.mil_outputs import score_map

if TYPE_CHECKING:
    from napari_gradcam.core.explain.explanation import Explanation
    from napari_gradcam.slides.lazy_slide import Slide

SimilarityTarget = Prompt | LikeEmbedding
"""What a slide's tiles can be compared with: a text prompt, or a region's embedding."""
NO_TILE = -2.0
"""The map's value where no tile was scored: below any cosine, so drawn transparent."""


@dataclass(frozen=True)
class SimilarityJob:
    """How to map a slide's similarity to a target (the command line's options).

    ``blur`` is a Gaussian's sigma in tiles; ``top_k`` the number of drill-down images the
    command writes for the most similar tiles.
    """

    target: SimilarityTarget
    overlap: float = 0.0
    min_tissue: float = MIN_TISSUE
    batch_size: int = 64
    blur: float = 0.0
    top_k: int = 4
    cache_dir: str | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class SimilarityMap:
    """Every tissue tile's similarity to the target, and the map painted from them.

    Attributes
    ----------
    tiles : SlideEmbeddings
        The tiles and their embeddings.
    direction : numpy.ndarray
        (D,) unit vector the tiles are compared with.
    scores : numpy.ndarray
        (N,) cosine similarity of each tile's embedding with ``direction``.
    placed : PlacedMap
        The scores painted over their tiles (:data:`NO_TILE` elsewhere), in level-0 pixels.
    """

    slide: Slide
    model: LoadedModel
    target: SimilarityTarget
    tiles: SlideEmbeddings
    direction: np.ndarray
    scores: np.ndarray
    placed: PlacedMap
    seconds: float

    @property
    def label(self) -> str:
        """What the map shows, e.g. ``"prompt 'nuclei-dense tissue'"`` or ``"like 'region'"``."""
        return describe_target(self.target, self.model.card)

    def limits(self) -> tuple[float, float]:
        """Display range: from just under the least similar tile to the most similar one.

        Cells without a tile (:data:`NO_TILE`) fall below it, so they are drawn transparent.
        """
        low, high = float(self.scores.min()), float(self.scores.max())
        margin = max(high - low, 1e-6) * 0.02
        return low - margin, high

    def top(self, k: int) -> list[int]:
        """The ``k`` most similar tiles, the most similar first."""
        return [int(i) for i in np.argsort(-self.scores, kind="stable")[:k]]

    def summary(self) -> str:
        """``"308 tiles scored against prompt 'nuclei' in 6.1 s"``, with the cache's part."""
        cached = " (cached embeddings)" if self.tiles.cached else ""
        return (
            f"{len(self.scores)} tiles scored against {self.label}{cached} in {self.seconds:.1f} s"
        )


def similarity_slide_map(
    slide: Slide, model: LoadedModel, job: SimilarityJob
) -> Generator[Progress, None, SimilarityMap]:
    """Embed the slide's tissue tiles (cached), score each against the target, paint the map.

    ``model``'s module returns (N, D) image embeddings and its card gives the tile size and mpp;
    a :class:`~napari_gradcam.core.targets.Prompt` needs its ``text`` encoder. Yields each
    step; closing the generator stops the run.
    """
    start = time.perf_counter()
    direction = target_direction(model, job.target)
    embedding = embed_slide(
        slide,
        model,
        overlap=job.overlap,
        min_tissue=job.min_tissue,
        batch_size=job.batch_size,
        cache_dir=job.cache_dir,
    )
    tiles = yield from relay(
        embedding, lambda step: Progress(step.step, step.total + 1, step.message)
    )
    if tiles.embeddings.shape[1] != len(direction):
        raise ValueError(
            f"the tiles' embeddings are {tiles.embeddings.shape[1]} wide but the target's "
            f"{len(direction)}: embed the region or prompt with the same model"
        )
    count = len(tiles.embeddings)
    what = describe_target(job.target, model.card)
    yield Progress(count, count + 1, f"scoring {count} tiles against {what}")
    scores = tile_similarity(tiles.embeddings, direction)
    painted, stride, origin = score_map(tiles, scores, job.blur)
    covered, _, _ = score_map(tiles, np.ones_like(scores))
    painted[covered == 0] = NO_TILE
    placed = PlacedMap(painted, stride, origin)
    yield Progress(count + 1, count + 1, f"{count} tiles scored")
    seconds = time.perf_counter() - start
    return SimilarityMap(slide, model, job.target, tiles, direction, scores, placed, seconds)


def target_direction(model: LoadedModel, target: SimilarityTarget) -> np.ndarray:
    """The (D,) unit vector a target compares image embeddings with (``bind_target``'s).

    A prompt: the normalised mean of its prompts' normalised text embeddings (the model's text
    encoder caches them per prompt); a reference embedding: itself, normalised. Refuses a
    model whose card does not say it returns embeddings, and a prompt without a text tower.
    """
    if not isinstance(target, SIMILARITY_KINDS):
        raise TypeError(f"a slide is compared with a Prompt or a LikeEmbedding, not {target!r}")
    reference = bind_target(target, model.card, model.text).reference
    return reference.detach().float().cpu().numpy()


def tile_similarity(embeddings: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(N,) cosine of each row of ``embeddings`` with the unit vector ``direction``."""
    rows = embeddings.astype(np.float64)
    norms = np.linalg.norm(rows, axis=1)
    cosine = rows @ direction.astype(np.float64) / np.maximum(norms, 1e-12)
    return cosine.astype(np.float32)


def region_target(
    slide: Slide, model: LoadedModel, box: tuple[float, float, float, float], label: str = "region"
) -> LikeEmbedding:
    """The target "like this region": the embedding of a level-0 box ``(y0, x0, y1, x1)``.

    The box is read at the model's microns per pixel, as the tiles are (grown about its centre
    to the model's input size when smaller), then embedded (``embed_region``).
    """
    y0, x0, y1, x1 = (float(v) for v in box)
    if not (0 <= y0 < y1 and 0 <= x0 < x1):
        raise ValueError(f"the region {box} is not a box (y0, x0, y1, x1) with y0 < y1, x0 < x1")
    _level, view = level_view(slide, model.card.mpp)
    region = view.region_from_level0((y0, x0, y1, x1))
    if region[2] <= region[0] or region[3] <= region[1]:
        raise ValueError(f"the region {box} lies outside the slide {slide.name!r}")
    if model.card.input_size is not None:
        region = expand_box(region, model.card.input_size, view.shape)
    top, left, bottom, right = region
    origin = np.array([[top, left]], np.int64)
    pixels = read_tiles(view, origin, (bottom - top, right - left))[0]
    return embed_region(model, pixels, label=label)


@dataclass(frozen=True)
class TileDrill:
    """One tile's pixels and its Grad-CAM for the target, placed in level-0 pixels."""

    tile: int
    pixels: np.ndarray
    explanation: Explanation
    placed: PlacedMap


def drill_down_tile(result: SimilarityMap, index: int, method: str = "gradcam") -> TileDrill:
    """The pixels of tile ``index`` that raise its similarity to the target, on the slide.

    Runs ``method`` (a layer method of ``explain``) on the tile as the encoder saw it, with the
    map's own target, so the drill-down explains the score the tile map shows.
    """
    tiles = result.tiles
    pixels = tile_pixels(result.slide, tiles, index)
    box = tiles.boxes[index]
    explanation = explain(
        result.model, pixels, method=method, target=result.target, origin=(box[0], box[1])
    )
    (py, px), (sy, sx) = tiles.pixel_size, explanation.stride
    cam = np.asarray(explanation.cam, np.float32)
    placed = PlacedMap(cam, (sy * py, sx * px), (float(box[0]), float(box[1])))
    return TileDrill(index, pixels, explanation, placed)
