"""``napari-gradcam similarity``: each tissue tile's similarity to a prompt or a region."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_gradcam.commands.progress_bar import run_with_bar
from napari_gradcam.commands.slide_mil import check_tile_map_numbers
from napari_gradcam.commands.trust_code import add_trust_code_argument
from napari_gradcam.core.tiling.grid import MIN_TISSUE
from napari_gradcam.slides.lazy_slide import BACKENDS

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.slides.similarity_map import SimilarityTarget

MEMORY_ADVICE = "lower --batch-size"
"""What to try when a slide's batches do not fit in memory."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``similarity`` subcommand."""
    parser = subparsers.add_parser(
        "similarity",
        help="tile map of each slide's similarity to a text prompt (vision-language model) or "
        "to a region (any encoder), with a CSV of tile scores and drill-down images",
    )
    parser.add_argument("slides", nargs="+", type=Path, help="whole slides (as for `slide`)")
    parser.add_argument(
        "--model", required=True, help="a model whose module returns image embeddings"
    )
    parser.add_argument("--weights", help="weights for a factory spec")
    add_trust_code_argument(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="text to compare the tiles with; repeat it for a prompt ensemble",
    )
    target.add_argument(
        "--like-region",
        metavar="BOX|FILE",
        help="compare with this region of the first slide (find tissue like it): x,y,w,h in "
        "level-0 pixels, or a GeoJSON / QuPath annotation file (its areas' bounding box)",
    )
    parser.add_argument("--template", help="prompt template, e.g. 'an H&E image of {}.'")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--backend", choices=BACKENDS, help="slide reader (as for `slide`)")
    parser.add_argument(
        "--slide-mpp", type=float, help="µm/px of level 0, for slides whose metadata lack it"
    )
    parser.add_argument("--overlap", type=float, default=0.0, help="tile overlap (0 to <1)")
    parser.add_argument("--batch-size", type=int, default=64, help="tiles per model call")
    parser.add_argument(
        "--min-tissue", type=float, default=MIN_TISSUE, help="skip tiles with less tissue than this"
    )
    parser.add_argument("--blur", type=float, default=0.0, help="smooth the map (sigma in tiles)")
    parser.add_argument("--top-k", type=int, default=4, help="drill-down images of the top tiles")
    parser.add_argument(
        "--cache", help="embedding cache folder (default ~/.cache/napari-gradcam/embeddings)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never an input)"
    )
    parser.set_defaults(run=run, scheduler=None)  # an image tower embeds in this process


def run(args: argparse.Namespace) -> int:
    """Map every slide's similarity to the target; return 0, or 1 when some failed."""
    from napari_gradcam.commands.slide import each_slide
    from napari_gradcam.models.cache import cached_model
    from napari_gradcam.slides.similarity_map import SimilarityJob
    from napari_gradcam.slides.similarity_outputs import (
        explain_slide_similarity,
        plan_similarity_outputs,
    )

    check_numbers(args)
    plans = plan_similarity_outputs(args.slides, args.out, args.overwrite)
    model = cached_model(args.model, args.weights, trust_code=args.trust_code)
    job = SimilarityJob(
        target=command_target(args, model),
        overlap=args.overlap,
        min_tissue=args.min_tissue,
        batch_size=args.batch_size,
        blur=args.blur,
        top_k=args.top_k,
        cache_dir=args.cache,
        overwrite=args.overwrite,
    )

    def map_one(slide: Any, outputs: Any, _client: Any) -> str:
        run = explain_slide_similarity(slide, model, job, outputs)
        summary = run_with_bar(run, slide.name, "tile")
        best = summary["similarity"]["max"]
        return (
            f"{summary['tiles']} tiles against {summary['target']} (best {best:.3f}), "
            f"{summary['seconds']:.1f} s -> {outputs.folder}/"
        )

    return each_slide(args, plans, map_one, MEMORY_ADVICE)


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse option values no run can use."""
    check_tile_map_numbers(args)
    if not 0 <= args.overlap < 1:
        raise ValueError(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.top_k < 0:
        raise ValueError(f"--top-k must be >= 0, got {args.top_k}")


def command_target(args: argparse.Namespace, model: LoadedModel) -> SimilarityTarget:
    """The prompt, or the embedding of ``--like-region`` on the first slide."""
    from napari_gradcam.core.regions.region_stats import pixel_box
    from napari_gradcam.core.regions.target_region import is_box, read_region
    from napari_gradcam.core.targets import Prompt
    from napari_gradcam.slides import open_slide
    from napari_gradcam.slides.similarity_map import region_target

    if args.prompt:
        return Prompt(tuple(args.prompt), args.template)
    first, spec = args.slides[0], args.like_region
    slide = open_slide(first, mpp=args.slide_mpp, backend=args.backend)
    box = pixel_box(read_region(spec, slide.shape[:2]), slide.shape[:2])
    if box is None:
        raise ValueError(
            f"the region {spec!r} lies outside {first.name}; give it in level-0 pixels"
        )
    name = f"box {spec}" if is_box(spec) else Path(spec).name
    return region_target(slide, model, box, label=f"{first.name} {name}")
