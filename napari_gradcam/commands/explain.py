"""``napari-gradcam explain``: a raw map, an overlay PNG and a JSON per image file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_gradcam.commands.failures import BatchFailures
from napari_gradcam.commands.max_pixels import add_max_pixels_argument
from napari_gradcam.commands.method_args import add_method_option_arguments, explain_settings
from napari_gradcam.commands.target_args import (
    TargetRequest,
    add_target_arguments,
    check_target_model,
    image_target,
    like_embedding,
    region_pixels,
    target_request,
)
from napari_gradcam.commands.trust_code import add_trust_code_argument
from napari_gradcam.core.explain.method_options import options_to_facts
from napari_gradcam.core.explain.methods import METHODS
from napari_gradcam.core.image_files import IMAGE_SUFFIXES, read_image
from napari_gradcam.core.output_files import (
    check_outputs,
    output_stem,
    save_array,
    save_json,
    save_png,
)
from napari_gradcam.core.pixel_limit import max_pixels
from napari_gradcam.core.regions.placement import heatmap_transform
from napari_gradcam.core.targets import describe_target, target_to_metadata
from napari_gradcam.core.tiling.grid import LevelView

if TYPE_CHECKING:
    from napari_gradcam.core.explain.explanation import Explanation
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.core.settings import ExplainSettings
    from napari_gradcam.core.trust.report import TrustReport


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``explain`` subcommand."""
    parser = subparsers.add_parser("explain", help="write a heatmap, overlay and JSON per image")
    parser.add_argument("images", nargs="+", type=Path, help="TIFF/SVS, PNG, JPEG or .npy files")
    parser.add_argument(
        "--model",
        default="demo",
        help="demo | demo-vit | module:factory | file.py:factory | timm:NAME | smp:NAME | "
        "recipe.json | model.pt",
    )
    parser.add_argument(
        "--weights",
        help="weights for a factory, timm or smp model: .safetensors or a state dict (never "
        "unpickled)",
    )
    parser.add_argument("--card", help="model card JSON (default: beside the weights/model)")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow unpickling a whole pickled model (runs code from the file: trusted files only)",
    )
    add_trust_code_argument(parser)
    parser.add_argument("--layer", help="module to explain (default: the card's or the last conv)")
    parser.add_argument("--method", default="gradcam", choices=sorted(METHODS))
    add_method_option_arguments(parser)
    add_target_arguments(parser)
    parser.add_argument(
        "--tta", action="store_true", help="average the map over flips (4x the work)"
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="run the masked forwards of scorecam/occlusion in bfloat16: about 2x faster on "
        "CPUs with AVX-512 BF16 and on GPUs, scores rounded to ~3 digits",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--format", default="npy", choices=["npy", "tif"], help="raw map format")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never an input)"
    )
    add_max_pixels_argument(parser)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="add a trust report to each JSON: sanity check, deletion/insertion AUC, noise",
    )
    parser.set_defaults(run=run)


def output_paths(image: Path, out: Path, fmt: str, target: str = "") -> dict[str, Path]:
    """The three output files of one image, named after it less its image suffix.

    ``target`` (a slug such as ``prompt-dense-nuclei``) follows the name when the target is
    not a single class, so the files say what was explained.
    """
    stem = output_stem(image, IMAGE_SUFFIXES, "image") + (f".{target}" if target else "")
    return {
        "cam": out / f"{stem}.cam.{fmt}",
        "overlay": out / f"{stem}.overlay.png",
        "json": out / f"{stem}.json",
    }


def plan_outputs(
    images: list[Path], out: Path, fmt: str, overwrite: bool, target: str = ""
) -> list[dict[str, Path]]:
    """Output paths per image; refuse inputs as outputs, clashes and (unasked) overwrites."""
    plans = [output_paths(image, out, fmt, target) for image in images]
    check_outputs([list(plan.values()) for plan in plans], "images", overwrite, images)
    return plans


def run(args: argparse.Namespace) -> int:
    """Explain every image of ``args.images``; return 0, or 1 when some failed."""
    from napari_gradcam import load_model

    request = target_request(args)
    settings = explain_settings(args, request.target)
    cap = max_pixels(args.max_pixels)  # a malformed $NAPARI_GRADCAM_MAX_PIXELS stops here, once
    plans = plan_outputs(args.images, args.out, args.format, args.overwrite, request.slug)
    loaded = load_model(
        args.model,
        weights=args.weights,
        card=args.card,
        allow_pickle=args.allow_pickle,
        trust_code=args.trust_code,
        device=args.device,
    )
    check_target_model(request, loaded)
    if request.like is not None:
        reference = read_image(args.like_image or args.images[0], max_pixels=cap)
        pixels = region_pixels(request, LevelView(reference), loaded.card.input_size, cap)
        embedding = like_embedding(loaded, pixels, request)
        settings = settings.replace(target=embedding)
    failures = BatchFailures("images", MEMORY_ADVICE)
    for image_path, paths in zip(args.images, plans, strict=True):
        try:
            explain_one(args, loaded, settings, request, image_path, paths)
        except Exception as err:  # noqa: BLE001 -- one image failing never ends the batch
            failures.add(image_path, err)
    return failures.exit_status(len(args.images))


MEMORY_ADVICE = (
    "explain a large image tile by tile with `napari-gradcam slide FILE --out DIR`, lower "
    "--max-pixels so that such images are refused before they are read, or use a smaller image"
)
"""What to try when an image does not fit in memory."""


def explain_one(
    args: argparse.Namespace,
    loaded: LoadedModel,
    settings: ExplainSettings,
    request: TargetRequest,
    image_path: Path,
    paths: dict[str, Path],
) -> None:
    """Explain one image and write its outputs; print what it found.

    An ``--output-region`` target gets its mask on this image's pixels.
    """
    from napari_gradcam import explain
    from napari_gradcam.core.overlay import overlay

    image = read_image(image_path, max_pixels=args.max_pixels)
    cap = max_pixels(args.max_pixels)
    if request.per_image:
        settings = settings.replace(target=image_target(request, image.shape[:2], cap))
    result = explain(loaded, image, settings)
    save_array(paths["cam"], result.cam)
    save_png(paths["overlay"], overlay(image, result.cam, result.stride))
    record = {
        **describe(result, image_path, loaded, paths),
        "target": describe_target(settings.target, loaded.card),
        "target_facts": target_to_metadata(settings.target),
        **options_to_facts(settings.options),
    }
    trust = check_trust(loaded, image, result, image_path, settings) if args.trust else None
    if trust is not None:
        record["trust"] = trust.to_dict()
    save_json(paths["json"], record)
    print(
        f"{image_path}: {result.target_names[0]} ({_result_value(result)}) "
        f"at {result.layer}, {result.timings['total']:.2f} s -> {paths['json'].parent}/"
    )
    if trust is not None:
        print(f"{image_path}: trust: {trust.headline}")


def _result_value(result: Explanation) -> str:
    """``p=0.912``, or ``similarity 0.314`` for a target without a probability."""
    probability = float(result.probabilities[0])
    if np.isfinite(probability):
        return f"p={probability:.3f}"
    return f"similarity {float(result.scores[0]):.3f}"


def check_trust(
    loaded: LoadedModel,
    image: np.ndarray,
    result: Explanation,
    image_path: Path,
    settings: ExplainSettings,
) -> TrustReport | None:
    """The trust report of ``result``, the map of ``image``, or ``None`` when it cannot run.

    The reason goes to stderr (e.g. a TorchScript model has no layers to re-initialise).
    """
    from napari_gradcam.core.trust.report import trust_report

    try:
        return trust_report(loaded, image, explanation=result, settings=settings)
    except ValueError as err:
        print(f"{image_path}: no trust report: {err}", file=sys.stderr)
        return None


def describe(
    result: Explanation, image_path: Path, loaded: LoadedModel, paths: dict[str, Path]
) -> dict:
    """The JSON record of one explanation."""
    scale, translate = heatmap_transform(result.stride, result.origin)
    return {
        "image": str(image_path),
        "model": {"spec": loaded.spec, "name": loaded.card.name},
        "class": result.target_names[0],
        "class_index": None if loaded.card.output == "embedding" else int(result.targets[0]),
        "probability": float(result.probabilities[0]),
        "score": float(result.scores[0]),
        "method": result.method,
        "tta": result.tta,
        "bfloat16": result.bfloat16,
        "layer": result.layer,
        "placement": {
            "stride": list(result.stride),
            "origin": list(result.origin),
            "napari_scale": list(scale),
            "napari_translate": list(translate),
        },
        "map_shape": list(np.shape(result.cam)),
        "map_range": [float(result.cam.min()), float(result.cam.max())],
        "timings_s": result.timings,
        "outputs": {key: path.name for key, path in paths.items()},
    }
