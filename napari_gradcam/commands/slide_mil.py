"""``napari-gradcam slide --mil CARD``: explain a slide-level (multiple-instance) prediction."""

from __future__ import annotations

import argparse
import os
from typing import Any

from napari_gradcam.commands.progress_bar import run_with_bar
from napari_gradcam.core.pixel_limit import MAX_PIXELS_ENV


def add_mil_arguments(parser: argparse.ArgumentParser) -> None:
    """The slide-model options of the ``slide`` command."""
    group = parser.add_argument_group("slide-level models (--mil)")
    group.add_argument(
        "--mil", metavar="CARD", help="slide-model card (.json): explain its slide prediction"
    )
    group.add_argument(
        "--percentile", action="store_true", help="draw percentile scores (CLAM-style)"
    )
    group.add_argument(
        "--blur", type=float, default=0.0, help="smooth the tile maps (sigma in tiles)"
    )
    group.add_argument("--baseline", default="zero", choices=["zero", "mean"], help="IG baseline")
    group.add_argument("--top-k", type=int, default=4, help="drill-down images for and against")
    group.add_argument(
        "--cache", help="embedding cache folder (default ~/.cache/napari-gradcam/embeddings)"
    )


def run_mil_mode(args: argparse.Namespace, each_slide: Any) -> int:
    """Explain every slide with the slide model (through the slide command's ``each_slide``)."""
    from napari_gradcam.models.slide_model import load_slide_model
    from napari_gradcam.slides.mil_outputs import plan_mil_outputs
    from napari_gradcam.slides.mil_runner import explain_slide_mil

    plans = plan_mil_outputs(args.slides, args.out, args.overwrite)
    if args.max_pixels is not None:
        # the slide-model run plans its tiles without a cap argument: set this process's cap
        os.environ[MAX_PIXELS_ENV] = str(args.max_pixels)
    job = mil_job(args)
    model = load_slide_model(args.mil, trust_code=args.trust_code)

    def explain_one(slide: Any, outputs: Any, client: Any) -> str:
        run = explain_slide_mil(slide, model, job, outputs, client=client)
        summary = run_with_bar(run, slide.name, "tile")
        return (
            f"{summary['target']} (p = {max(summary['probabilities']):.3f}), "
            f"{summary['tiles']} tiles, {summary['seconds']:.1f} s -> {outputs.folder}/"
        )

    return each_slide(args, plans, explain_one, MIL_MEMORY_ADVICE)


MIL_MEMORY_ADVICE = "lower --batch-size"
"""What to try when a slide model's batches do not fit in memory."""


def check_tile_map_numbers(args: argparse.Namespace) -> None:
    """Refuse a ``--batch-size`` or ``--blur`` no tile-map run (MIL, similarity) can use."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.blur < 0:
        raise ValueError(f"--blur must be >= 0 (tiles), got {args.blur}")


def mil_job(args: argparse.Namespace) -> Any:
    """The slide-model run's options from the parsed arguments."""
    from napari_gradcam.slides.mil_runner import MilJob

    check_tile_map_numbers(args)
    target = args.target
    if target is not None and target.lstrip("-").isdigit():
        target = int(target)
    overlap = 0.0 if args.overlap is None else args.overlap
    return MilJob(
        card=args.mil,
        target=target,
        overlap=overlap,
        min_tissue=args.min_tissue,
        batch_size=args.batch_size,
        percentile=args.percentile,
        blur=args.blur,
        baseline=args.baseline,
        top_k=args.top_k,
        cache_dir=args.cache,
        overwrite=args.overwrite,
    )
