"""The command line's target flags: what to explain, one kind at a time.

``explain`` and ``slide`` share them: ``--target CLASS``, ``--classes A,B`` (summed),
``--contrast MAIN[:AGAINST]`` with ``--alpha`` (Finer-CAM), ``--prompt TEXT`` (repeatable: an
ensemble) with ``--template``, ``--like-region BOX|FILE`` (tissue like this region) and
``--output-region CLASS`` with ``--region BOX|FILE`` or ``--region-mask IMAGE`` (a segmentation
model's class inside a region). :func:`target_request` reads them before any file is opened;
the region kinds are completed once the model and the image they refer to are known.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_gradcam.core.pixel_limit import check_pixels
from napari_gradcam.core.regions.region_stats import expand_box, pixel_box
from napari_gradcam.core.regions.target_region import (
    check_same_extent,
    is_box,
    mask_grid,
    polygons_on_grid,
    read_region,
    read_region_mask,
    stretched_mask,
)
from napari_gradcam.core.targets import Classes, Contrast, OutputRegion, Prompt
from napari_gradcam.core.tiling.grid import LevelView

if TYPE_CHECKING:
    from napari_gradcam.core.loaded_model import LoadedModel
    from napari_gradcam.core.targets import LikeEmbedding, Target

TARGET_FLAGS = ("target", "classes", "contrast", "prompt", "like_region", "output_region")
"""The flags that each name a target (one at most)."""


def add_target_arguments(parser: argparse.ArgumentParser, *, whole_slide: bool = False) -> None:
    """Add the target flags: one kind of target, and the options of that kind."""
    where = "the slide's level 0" if whole_slide else "the image"
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument(
        "--target",
        help="class name or index (default: the predicted class"
        + (" of each tile)" if whole_slide else ")"),
    )
    kinds.add_argument(
        "--classes", metavar="A,B", help="several classes, their scores summed (multi-label)"
    )
    kinds.add_argument(
        "--contrast",
        metavar="MAIN[:AGAINST]",
        help="what separates MAIN from AGAINST (Finer-CAM; default: MAIN's nearest class)",
    )
    kinds.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="a vision-language model's similarity to this text; repeat for an ensemble "
        "(the mean of their text embeddings)",
    )
    kinds.add_argument(
        "--like-region",
        metavar="BOX|FILE",
        help=f"similarity to this region's embedding: x,y,w,h in pixels of {where}, or a "
        "GeoJSON / QuPath annotation file (its areas' bounding box)",
    )
    kinds.add_argument(
        "--output-region",
        metavar="CLASS",
        help="a segmentation model's summed logit of CLASS inside --region or --region-mask",
    )
    parser.add_argument(
        "--alpha", type=float, help="--contrast: weight of the class subtracted (default 1)"
    )
    parser.add_argument(
        "--template", help="--prompt: wording around each prompt, e.g. 'an H&E image of {}'"
    )
    parser.add_argument(
        "--like-image",
        type=Path,
        help="--like-region: the image the region is drawn on (default: "
        + ("the slide itself)" if whole_slide else "the first image)"),
    )
    region = parser.add_mutually_exclusive_group()
    region.add_argument(
        "--region",
        metavar="BOX|FILE",
        help=f"--output-region: x,y,w,h in pixels of {where}, or a GeoJSON / QuPath file",
    )
    region.add_argument(
        "--region-mask",
        type=Path,
        metavar="IMAGE",
        help="--output-region: a mask or labels image aligned with "
        + ("the slide (any size with its extent)" if whole_slide else "the input"),
    )
    parser.add_argument(
        "--region-label", type=int, metavar="N", help="--region-mask: the label N of a labels image"
    )


@dataclass(frozen=True)
class TargetRequest:
    """What the target flags ask for, before the model and the images are read.

    Attributes
    ----------
    target : Target
        The target itself for the class and prompt kinds; for ``--output-region`` an
        ``OutputRegion`` without its mask, for ``--like-region`` ``None`` (see ``like``).
    like : str, optional
        The ``--like-region`` box or file.
    like_image : Path, optional
        The image that region is drawn on.
    region : str, optional
        The ``--region`` box or file.
    region_mask : Path, optional
        The ``--region-mask`` image, with ``region_label``.
    slug : str
        A short name for output files (empty for a single class or the top class).
    """

    target: Target = None
    like: str | None = None
    like_image: Path | None = None
    region: str | None = None
    region_mask: Path | None = None
    region_label: int | None = None
    slug: str = ""

    @property
    def per_image(self) -> bool:
        """Whether the target is completed per image (an output region's mask on its pixels)."""
        return self.region is not None or self.region_mask is not None


def _class(text: str) -> int | str:
    """A class by name, or by index when it is a whole number."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _refuse_unused(args: argparse.Namespace, kind: str | None) -> None:
    """Refuse an option of another target kind, naming the flag it belongs to."""
    owners = {
        "alpha": "contrast",
        "template": "prompt",
        "like_image": "like_region",
        "region": "output_region",
        "region_mask": "output_region",
        "region_label": "output_region",
    }
    for option, owner in owners.items():
        if getattr(args, option, None) is not None and kind != owner:
            flag, needed = _flag(option), _flag(owner)
            raise ValueError(f"{flag} goes with {needed}: add {needed}, or drop {flag}")


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def target_request(args: argparse.Namespace) -> TargetRequest:
    """Read the target flags into a :class:`TargetRequest`; ``ValueError`` says what to fix."""
    kind = next((name for name in TARGET_FLAGS if getattr(args, name) is not None), None)
    _refuse_unused(args, kind)
    if kind is None:
        return TargetRequest()
    value = getattr(args, kind)
    if kind == "target":
        return TargetRequest(_class(value))
    if kind == "classes":
        classes = tuple(_class(name) for name in value.split(",") if name.strip())
        if len(classes) < 2:
            raise ValueError(
                f"--classes takes two classes or more, e.g. --classes tumour,necrosis; for one "
                f"class use --target {value.strip(', ')}"
            )
        return TargetRequest(Classes(classes), slug=_slug("classes", *map(str, classes)))
    if kind == "contrast":
        main, _, against = value.partition(":")
        if not main.strip():
            raise ValueError("--contrast needs a class: MAIN or MAIN:AGAINST, e.g. tumour:stroma")
        alpha = 1.0 if args.alpha is None else args.alpha
        target = Contrast(_class(main), _class(against) if against.strip() else None, alpha)
        return TargetRequest(target, slug=_slug("contrast", main, against or "nearest"))
    if kind == "prompt":
        texts = tuple(text.strip() for text in value)
        if not all(texts):
            raise ValueError("--prompt needs some text, e.g. --prompt 'dense nuclei'")
        return TargetRequest(Prompt(texts, args.template), slug=_slug("prompt", *texts))
    if kind == "like_region":
        return TargetRequest(
            like=value, like_image=args.like_image, slug=_slug("like", _region_name(value))
        )
    if args.region is None and args.region_mask is None:
        raise ValueError(
            "--output-region needs the region: --region x,y,w,h (or a GeoJSON file) or "
            "--region-mask MASK.png"
        )
    spec = args.region if args.region is not None else str(args.region_mask)
    return TargetRequest(
        OutputRegion(_class(value), None, _region_name(spec, args.region_label)),
        region=args.region,
        region_mask=args.region_mask,
        region_label=args.region_label,
        slug=_slug("region", value, _region_name(spec, args.region_label)),
    )


def _region_name(spec: str, label: int | None = None) -> str:
    """How a region is named in records: ``box x,y,w,h``, or the file's name (and label)."""
    name = f"box {spec.strip()}" if is_box(spec) else Path(spec).name
    return name if label is None else f"{name} label {label}"


def _slug(*words: str) -> str:
    """Words as a file-name part: lower case letters, digits and dashes, at most 60 characters.

    Examples
    --------
    >>> _slug("prompt", "Dense nuclei!", "tumour")
    'prompt-dense-nuclei-tumour'
    """
    text = re.sub(r"[^a-z0-9]+", "-", " ".join(words).lower()).strip("-")
    return text[:60].rstrip("-")


def check_target_model(request: TargetRequest, loaded: LoadedModel) -> None:
    """Refuse a target the model cannot answer, saying which models can."""
    output = loaded.card.output
    if isinstance(request.target, Prompt) and loaded.text is None:
        instead = {
            "classes": "explain a class with --target, --classes or --contrast",
            "embedding": "explain tissue like a region with --like-region",
            "dense": "explain an output region with --output-region",
        }[output]
        raise ValueError(
            f"--prompt needs a vision-language model with a text tower (open_clip:ARCH, a "
            f"Hugging Face CLIP or SigLIP model, or a card naming its text tower); "
            f"{loaded.spec} has none: {instead}"
        )
    if isinstance(request.target, OutputRegion) and output != "dense":
        raise ValueError(
            f"--output-region needs a segmentation model (card output 'dense': logits (N, C, H, "
            f"W)); {loaded.spec} gives {output}: explain a class with --target"
        )
    asks_classes = request.like is None and not isinstance(request.target, (Prompt, OutputRegion))
    if output == "embedding" and asks_classes:
        raise ValueError(
            f"{loaded.spec} returns an embedding, not classes: explain a text prompt with "
            "--prompt (vision-language models) or tissue like a region with --like-region"
        )


def region_mask(
    request: TargetRequest, image_shape: tuple[int, int], max_pixels: int
) -> np.ndarray:
    """The ``--output-region`` as a mask covering an image of ``image_shape`` (level 0).

    On the image's own pixels while they fit in ``max_pixels``, else on a coarser grid of the
    same extent (a whole slide); a ``--region-mask`` keeps its own grid, checked to cover the
    image.
    """
    if request.region_mask is not None:
        mask = read_region_mask(
            request.region_mask, label=request.region_label, max_pixels=max_pixels
        )
        check_same_extent(mask.shape, image_shape, request.region_mask.name)
        return mask
    polygons = read_region(str(request.region), image_shape)
    mask = polygons_on_grid(polygons, image_shape, mask_grid(image_shape, max_pixels))
    if not mask.any():
        raise ValueError(
            f"the region {request.region!r} covers no pixel of the {image_shape[0]} x "
            f"{image_shape[1]} image; give a region on the image (x,y,w,h in its pixels)"
        )
    return mask


def image_target(request: TargetRequest, image_shape: tuple[int, int], max_pixels: int) -> Target:
    """The target of one image of ``image_shape``: an output region gets its mask there."""
    if not isinstance(request.target, OutputRegion):
        return request.target
    mask = stretched_mask(region_mask(request, image_shape, max_pixels), image_shape)
    return replace(request.target, mask=mask)


def region_pixels(
    request: TargetRequest, view: LevelView, min_size: Sequence[int] | None, max_pixels: int
) -> np.ndarray:
    """The ``--like-region`` pixels (its areas' bounding box) read from a pyramid level's view.

    The region is given in level-0 pixels and read at ``view``'s scale, the tiles' (an image
    file is its own level 0: ``LevelView(pixels)``). A region smaller than ``min_size`` (the
    model's input) grows about its centre to it, within the image, so it can be embedded.
    """
    image_shape = view.level0_shape
    box = pixel_box(read_region(str(request.like), image_shape), image_shape)
    if box is None:
        raise ValueError(
            f"the region {request.like!r} lies outside the {image_shape[0]} x {image_shape[1]} "
            "image; give a region on it, in its (level-0) pixels"
        )
    region = view.region_from_level0(box)
    if min_size is not None:
        region = expand_box(region, min_size, view.shape)
    y0, x0, y1, x1 = region
    check_pixels((y1 - y0, x1 - x0), "the --like-region", "draw a smaller region", limit=max_pixels)
    return view.read(y0, x0, y1, x1)


def like_embedding(
    loaded: LoadedModel, pixels: np.ndarray, request: TargetRequest
) -> LikeEmbedding:
    """Embed the ``--like-region`` pixels, labelled with the region's name."""
    from napari_gradcam import embed_region

    return embed_region(loaded, pixels, label=_region_name(str(request.like)))
