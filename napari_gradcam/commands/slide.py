"""``napari-gradcam slide``: tiled, tissue-aware Grad-CAM over whole slides, on Dask."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_gradcam.commands.failures import BatchFailures
from napari_gradcam.commands.max_pixels import add_max_pixels_argument
from napari_gradcam.commands.method_args import add_method_option_arguments, explain_settings
from napari_gradcam.commands.progress_bar import run_with_bar
from napari_gradcam.commands.slide_mil import add_mil_arguments, run_mil_mode
from napari_gradcam.commands.target_args import (
    TargetRequest,
    add_target_arguments,
    check_target_model,
    like_embedding,
    region_mask,
    region_pixels,
    target_request,
)
from napari_gradcam.commands.trust_code import add_trust_code_argument
from napari_gradcam.core.explain.methods import METHODS
from napari_gradcam.core.pixel_limit import max_pixels
from napari_gradcam.core.tiling.grid import MIN_TISSUE, LevelView
from napari_gradcam.slides.lazy_slide import BACKENDS

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.core.targets import Target
    from napari_gradcam.slides.lazy_slide import Slide
    from napari_gradcam.slides.runner import SlideJob

CONNECT_TIMEOUT = "10s"
"""How long to try reaching a Dask scheduler."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``slide`` subcommand."""
    parser = subparsers.add_parser(
        "slide",
        help=(
            "stitched heatmap, per-tile CSV, QuPath tiles (GeoJSON) and overlay per whole slide "
            "(any scanner format)"
        ),
    )
    parser.add_argument(
        "slides",
        nargs="+",
        type=Path,
        help=".svs, (OME-)TIFF, .ndpi, .vms, .vmu, .mrxs, .scn, .bif, .svslide files, or DICOM "
        "WSI folders (or one of their .dcm files)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="slide reader (default: tifffile for the TIFF family, wsidicom for DICOM, else "
        "openslide)",
    )
    _add_model_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--mpp", type=float, help="explain at this µm/px (default: the model's)")
    where.add_argument("--level", type=int, help="explain this pyramid level as it is")
    parser.add_argument(
        "--slide-mpp", type=float, help="µm/px of level 0, for slides whose metadata lack it"
    )
    parser.add_argument(
        "--overlap", type=float, help="tile overlap (0 to <1; default 0.5, with --mil 0)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="tiles per model call")
    parser.add_argument(
        "--min-tissue", type=float, default=MIN_TISSUE, help="skip tiles with less tissue than this"
    )
    parser.add_argument("--all-tiles", action="store_true", help="explain background tiles too")
    parser.add_argument("--window", default="hann", choices=["hann", "mean"], help="blending")
    _add_method_arguments(parser)
    parser.add_argument("--scheduler", help="dask.distributed scheduler address (default: local)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never an input)"
    )
    add_max_pixels_argument(parser)
    add_mil_arguments(parser)
    parser.set_defaults(run=run)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="demo",
        help="demo | demo-vit | module:factory | timm:NAME | smp:NAME | recipe.json | model.pt",
    )
    parser.add_argument(
        "--weights", help="weights for a factory, timm or smp model (.safetensors or state dict)"
    )
    add_trust_code_argument(parser)


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default="gradcam", choices=sorted(METHODS))
    add_method_option_arguments(parser)
    parser.add_argument("--layer", help="module to explain (default: the card's or last conv)")
    add_target_arguments(parser, whole_slide=True)
    parser.add_argument(
        "--tta", action="store_true", help="average each tile's map over flips (4x the work)"
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="run the masked forwards of scorecam/occlusion in bfloat16 (faster, approximate)",
    )


def slide_job(args: argparse.Namespace, request: TargetRequest) -> SlideJob:
    """The runner's options from the parsed arguments and their target ``request``."""
    from napari_gradcam.slides.runner import SlideJob

    settings = explain_settings(args, request.target)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    return SlideJob(
        model=args.model,
        weights=args.weights,
        settings=settings,
        mpp=args.mpp,
        level=args.level,
        overlap=0.5 if args.overlap is None else args.overlap,
        batch_size=args.batch_size,
        min_tissue=args.min_tissue,
        tissue=not args.all_tiles,
        window=args.window,
        overwrite=args.overwrite,
        max_pixels=max_pixels(args.max_pixels),
    )


def run(args: argparse.Namespace) -> int:
    """Explain every slide; return 0, or 1 when some failed."""
    if args.mil:
        if target_request(args).slug:
            raise ValueError(
                "--mil explains a class of the slide-level model: give --target CLASS (or "
                "nothing, for its predicted class) instead of another kind of target"
            )
        return run_mil_mode(args, each_slide)
    from napari_gradcam.models.cache import cached_model
    from napari_gradcam.slides.outputs import plan_slide_outputs

    request = target_request(args)
    plans = plan_slide_outputs(args.slides, args.out, args.overwrite, request.slug)
    job = slide_job(args, request)
    loaded = cached_model(job.model, job.weights, trust_code=args.trust_code)
    check_target_model(request, loaded)

    def explain_one(slide: Slide, outputs: Any, client: Any) -> str:
        target = slide_target(args, request, loaded, slide, job)
        this_job = replace(job, settings=job.settings.replace(target=target))
        summary = _explain_one(slide, this_job, outputs, client, loaded.card.mpp)
        tiles = summary["tiles"]
        outside = tiles["outside_region"]
        explained = summary["heatmap"]["target_description"]
        return (
            f"{tiles['explained']} tiles explained ({explained}), {tiles['skipped']} skipped "
            "(background)"
            + (f", {outside} outside the region" if outside else "")
            + f", level {summary['heatmap']['level']}, {summary['seconds']:.1f} s -> "
            f"{outputs.summary.parent}/"
        )

    return each_slide(args, plans, explain_one, SLIDE_MEMORY_ADVICE)


def each_slide(
    args: argparse.Namespace,
    plans: Sequence[Any],
    explain_one: Callable[[Slide, Any, Any], str],
    advice: str,
) -> int:
    """Open and explain each slide, printing what ``explain_one(slide, outputs, client)`` says.

    One slide failing never ends the batch; returns 0, or 1 when some failed (``advice``: what
    to try when a slide's batches do not fit in memory).
    """
    from napari_gradcam.slides import open_slide

    failures = BatchFailures("slides", advice)
    with _client(args.scheduler) as client:
        for path, outputs in zip(args.slides, plans, strict=True):
            try:
                slide = open_slide(path, mpp=args.slide_mpp, backend=args.backend)
                print(f"{path}: {explain_one(slide, outputs, client)}")
            except Exception as err:  # noqa: BLE001 -- one slide failing never ends the batch
                failures.add(path, err)
    return failures.exit_status(len(args.slides))


def slide_target(
    args: argparse.Namespace,
    request: TargetRequest,
    loaded: LoadedModel,
    slide: Slide,
    job: SlideJob,
) -> Target:
    """The target of one slide: an output region's mask over it, or a region's embedding.

    The output region's mask covers level 0 (on a coarser grid when level 0 would pass the
    pixel cap); the ``--like-region`` pixels are read at the level the tiles are read from,
    unless ``--like-image`` names another image.
    """
    from napari_gradcam.core.image_files import read_image
    from napari_gradcam.core.tiling.tiled import level_view

    cap = max_pixels(args.max_pixels)
    if request.per_image:
        return replace(request.target, mask=region_mask(request, slide.shape, cap))
    if request.like is None:
        return request.target
    if args.like_image is not None:
        view = LevelView(read_image(args.like_image, max_pixels=cap))
    else:
        _, view = level_view(slide, loaded.card.mpp, mpp=job.mpp, level=job.level)
    pixels = region_pixels(request, view, loaded.card.input_size, cap)
    return like_embedding(loaded, pixels, request)


SLIDE_MEMORY_ADVICE = "lower --batch-size, or explain a coarser level (--mpp or --level)"
"""What to try when a slide's batches do not fit in memory."""


def _explain_one(
    slide: Slide,
    job: SlideJob,
    outputs: Any,
    client: Any,
    model_mpp: float | None,
) -> dict[str, Any]:
    from napari_gradcam.slides.runner import explain_slide

    path = slide.path
    if slide.mpp is None and model_mpp is not None and job.level is None:
        print(
            f"{path}: no microns per pixel in the metadata; reading level 0 as if it were at the "
            f"model's {model_mpp} µm/px (state it with --slide-mpp)",
            file=sys.stderr,
        )
    return run_with_bar(explain_slide(slide, job, outputs, client=client), path.name, "tile")


def _client(address: str | None) -> AbstractContextManager[Any]:
    """A dask.distributed Client for ``address``, or nothing (local threads)."""
    if address is None:
        return nullcontext(None)
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT)
    except OSError as err:
        raise ValueError(f"cannot reach the Dask scheduler at {address!r}: {err}") from err
