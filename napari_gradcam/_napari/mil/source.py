"""The slide behind an image layer, as the headless slide-model run reads it.

A layer opened by the plugin's reader names its file (``metadata["slide"]["path"]``): the
slide is reopened from it, so the embedding cache is keyed by the file as for the command
line. Any other 2-D RGB image layer (multiscale or not) is read from its own data. Either
way level 0 of the slide is level 0 of the layer's data, so level-0 pixels place maps on the
layer with its scale and translate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari.layers import Image

from napari_gradcam._napari.plane import layer_mpp
from napari_gradcam.slides.lazy_slide import Slide, open_slide


@dataclass(frozen=True)
class SlideSource:
    """What the worker needs to read a layer's slide (taken on the main thread).

    ``path`` is the slide file the layer was opened from, if any, else its ``levels`` (finest
    first) are read; ``downsamples`` are level-0 pixels per pixel of each level, ``mpp``
    microns per level-0 pixel.
    """

    name: str
    path: Path | None
    levels: tuple[Any, ...]
    downsamples: tuple[tuple[float, float], ...]
    mpp: float | None

    def open(self) -> Slide:
        """The slide: reopened from its file, else made of the layer's levels."""
        if self.path is not None and self.path.exists():
            slide = open_slide(self.path)
            known = slide.mpp is not None or self.mpp is None
            return slide if known else open_slide(self.path, self.mpp)
        source = "unknown" if self.mpp is None else "given"
        return Slide(self.levels, self.downsamples, self.mpp, source, self.name)


def slide_source(layer: Image) -> SlideSource:
    """Take what the worker needs from a slide image layer.

    Raise ``ValueError`` for a layer that is not one 2-D RGB slide (a stack, a grayscale image,
    a 3-D view).
    """
    levels = tuple(layer.data) if layer.multiscale else (layer.data,)
    shapes = [tuple(int(n) for n in level.shape) for level in levels]
    if not layer.rgb or len(shapes[0]) != 3:
        raise ValueError(
            f"the layer {layer.name!r} is not a 2-D RGB slide ({shapes[0]}); slide-level "
            "models embed RGB tissue tiles: open a whole slide with the plugin's reader"
        )
    downsamples = tuple((shapes[0][0] / shape[0], shapes[0][1] / shape[1]) for shape in shapes)
    facts = layer.metadata.get("slide")
    path = facts.get("path") if isinstance(facts, dict) else None
    return SlideSource(
        layer.name, Path(path) if path else None, levels, downsamples, layer_mpp(layer)
    )
