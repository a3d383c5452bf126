"""napari layers of a similarity run: the tile map and the drill-downs, placed on the slide.

The tile map follows the MIL maps' conventions (``_napari.mil.layers``): one cell per tile,
nearest-neighbour, the sequential magma over the tiles' range of similarity, transparent where
no tile was scored, with napari's colour bar. A drill-down is drawn like the MIL ones (teal,
transparent at zero). Every layer carries its facts under the plugin's metadata key and is
named after the prompt or region it compares with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Image

from napari_gradcam._napari.explain.tiled_layers import clear_low
from napari_gradcam._napari.mil.layers import MAP_OPACITY, SEQUENTIAL, drill_colormap
from napari_gradcam._napari.records import METADATA_KEY
from napari_gradcam._napari.result_layers import contrast_limits, placement_kwargs

if TYPE_CHECKING:
    from napari_gradcam._napari.mil.job import DrillOutcome
    from napari_gradcam.slides.similarity_map import SimilarityMap

FACTS_KEY = "similarity"
"""Key of a similarity layer's facts inside the plugin's metadata."""


def map_name(image: Image, label: str) -> str:
    """The tile map's name: ``"<slide> similarity to prompt 'nuclei-dense tissue'"``."""
    return f"{image.name} similarity to {label}"


def similarity_layer(result: SimilarityMap, image: Image, spec: str) -> Image:
    """The tile map as an image layer aligned with the slide layer ``image``."""
    placed = result.placed
    facts = {
        FACTS_KEY: {
            "model": spec,
            "target": result.label,
            "target_kind": type(result.target).__name__,
            "stride": placed.stride,
            "origin": placed.origin,
            "image_layer": image.name,
            "pyramid_level": result.tiles.level,
            "tiles": len(result.scores),
        }
    }
    return Image(
        placed.cam,
        name=map_name(image, result.label),
        colormap=clear_low(SEQUENTIAL),
        contrast_limits=result.limits(),
        opacity=MAP_OPACITY,
        blending="translucent",
        interpolation2d="nearest",
        metadata={METADATA_KEY: facts},
        **placement_kwargs(image, placed.stride, placed.origin),
    )


def similarity_drill_name(image: Image, label: str, tile: int) -> str:
    """The name of a tile's drill-down layer."""
    return f"{map_name(image, label)} drill-down tile {tile}"


def similarity_drill_layer(drill: DrillOutcome, image: Image) -> Image:
    """A tile's Grad-CAM of the map's target, over its tile on ``image``."""
    placed = drill.placed
    facts = {f"{FACTS_KEY}_drill_down": {**drill.facts, "image_layer": image.name}}
    return Image(
        placed.cam,
        name=similarity_drill_name(image, drill.facts["target_name"], drill.tile),
        colormap=drill_colormap("for"),
        contrast_limits=contrast_limits(placed.cam),
        opacity=0.5,
        blending="translucent",
        interpolation2d="linear",
        metadata={METADATA_KEY: facts},
        **placement_kwargs(image, placed.stride, placed.origin),
    )
