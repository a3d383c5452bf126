"""napari layers of a slide-model run: tile score maps and drill-down maps, placed on the slide.

Signed scores (for the class when positive, against it when negative) get a diverging
brown-teal colormap (ColorBrewer's BrBG; PiYG's pink looks like eosin) with contrast limits
symmetric about zero (the reader draws the command line's signed maps with it too); attention
gets the sequential magma from zero. Where no tile was scored the maps are transparent. A
drill-down keeps its side's colour: teal for a tile that pushed for the class, orange-brown for
one that pushed against it. :func:`legend_html` says what the colours of a map mean. Every
layer carries its facts under the plugin's metadata key (so the other docks do not offer it as
an image to explain), but is not a Grad-CAM heatmap record: the trust and annotation docks,
which re-run a classifier, do not list it.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.colormaps import Colormap

from napari_gradcam._napari.explain.tiled_layers import clear_low
from napari_gradcam._napari.explain.tiled_review import to_world
from napari_gradcam._napari.records import METADATA_KEY
from napari_gradcam._napari.result_layers import contrast_limits, placement_kwargs

if TYPE_CHECKING:
    from napari_gradcam._napari.mil.job import DrillOutcome
    from napari_gradcam.slides.mil_runner import MilResult, ScoreMap

SEQUENTIAL = "magma"
BROWN, TAN = (0.33, 0.19, 0.02, 1.0), (0.81, 0.64, 0.34, 1.0)
TEAL, DARK_TEAL = (0.35, 0.69, 0.65, 1.0), (0.0, 0.24, 0.19, 1.0)
"""ColorBrewer's BrBG ends and quarter points (written out: no matplotlib needed)."""
DRILL_COLOURS = {
    "for": ((0.35, 0.69, 0.65), (0.0, 0.95, 0.85)),
    "against": ((0.81, 0.64, 0.34), (1.0, 0.45, 0.0)),
}
"""A drill-down's colour ramp per side: teal to bright cyan (for), tan to orange (against)."""
MAP_OPACITY = 0.7
LABELS = {
    "attention": "attention",
    "grad_x_embedding": "grad x embedding",
    "integrated_gradients": "integrated gradients",
}


def diverging() -> Colormap:
    """Brown (against) to teal (for), fading to transparent at zero (neither is an H&E stain).

    The opacity grows with the score's magnitude up to half the range, so tiles that barely
    pushed (and cells without a tile) leave the slide visible.
    """
    colors = [BROWN, TAN, (*TAN[:3], 0.0), (*TEAL[:3], 0.0), TEAL, DARK_TEAL]
    controls = [0.0, 0.25, 0.5, 0.5, 0.75, 1.0]
    return Colormap(colors, controls=controls, name="BrBG (clear zero)")


def score_limits(cam: np.ndarray, signed: bool) -> tuple[float, float]:
    """``(-m, m)`` for a signed map (m its largest magnitude), ``(0, max)`` otherwise."""
    peak = float(np.abs(cam).max()) if cam.size else 0.0
    peak = peak if peak > 0 else 1.0
    return (-peak, peak) if signed else (0.0, peak)


def score_layer(score: ScoreMap, result: MilResult, image: Image, card: str) -> Image:
    """One tile score's map as an image layer aligned with the slide layer ``image``."""
    placed = score.placed
    facts = {
        "mil": {
            "card": card,
            "model": result.model.name,
            "score": score.name,
            "signed": score.signed,
            "target_name": result.target_name,
            "stride": placed.stride,
            "origin": placed.origin,
            "image_layer": image.name,
            "pyramid_level": result.tiles.level,
            "tiles": len(result.tiles.embeddings),
        }
    }
    return Image(
        placed.cam,
        name=f"{image.name} MIL {LABELS[score.name]} {result.target_name}",
        colormap=diverging() if score.signed else clear_low(SEQUENTIAL),
        contrast_limits=score_limits(placed.cam, score.signed),
        opacity=MAP_OPACITY,
        blending="translucent",
        interpolation2d="nearest",
        metadata={METADATA_KEY: facts},
        **placement_kwargs(image, placed.stride, placed.origin),
    )


def drill_layer(drill: DrillOutcome, image: Image) -> Image:
    """A tile's drill-down map as an image layer over its tile on ``image``."""
    placed = drill.placed
    return Image(
        placed.cam,
        name=drill_name(image, drill.tile, drill.side),
        colormap=drill_colormap(drill.side),
        contrast_limits=contrast_limits(placed.cam),
        opacity=0.5,
        blending="translucent",
        interpolation2d="linear",
        metadata={METADATA_KEY: {"mil_drill_down": {**drill.facts, "image_layer": image.name}}},
        **placement_kwargs(image, placed.stride, placed.origin),
    )


def drill_colormap(side: str) -> Colormap:
    """Transparent at zero, then the side's colour ramp (see :data:`DRILL_COLOURS`)."""
    low, high = DRILL_COLOURS.get(side, DRILL_COLOURS["for"])
    colors = [(*low, 0.0), (*low, 0.0), (*low, 0.8), (*high, 1.0)]
    return Colormap(colors, controls=[0.0, 0.15, 0.4, 1.0], name=f"drill-down {side}")


def legend_html(name: str, signed: bool, target: str) -> str:
    """What the colours of a score map mean, with colour swatches (rich text for a label)."""
    target = escape(target, quote=False)
    if signed:
        return (
            f"{_swatch(DARK_TEAL)}{_swatch(TEAL)} for {target}<br>"
            f"{_swatch(BROWN)}{_swatch(TAN)} against {target}<br>"
            f"clear: neither (or no tissue)<br><small>{LABELS.get(name, name)}: how much each "
            f"tile pushed the slide towards or away from {target}</small>"
        )
    return (
        f"{_swatch((0.99, 0.99, 0.75))}{_swatch((0.72, 0.21, 0.47))}{_swatch((0.23, 0.06, 0.44))}"
        f" attention, high to low<br>clear: none (or no tissue)<br><small>where the model "
        f"looked; it says nothing about for or against {target}</small>"
    )


def _swatch(colour: tuple[float, ...]) -> str:
    red, green, blue = (round(255 * c) for c in colour[:3])
    return f"<span style='color:#{red:02x}{green:02x}{blue:02x}'>&#9632;</span>"


def drill_name(image: Image, tile: int, side: str) -> str:
    """The name of a tile's drill-down layer."""
    return f"{image.name} MIL drill-down tile {tile} ({side})"


def tile_centre(image: Image, box: Any) -> tuple[float, float]:
    """World ``(y, x)`` of the centre of a level-0 box ``(y0, x0, y1, x1)`` of ``image``."""
    y0, x0, y1, x1 = (float(v) for v in box)
    world = to_world(image, ((y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2))
    return float(world[0]), float(world[1])
