"""How a heatmap looks over tissue: its colormap, its 0-1 display range and its colour bar.

Chosen to be read at a glance over H&E (see docs/napari.md, "How a map looks, and why"):

- **viridis**, QuPath's default for measurement maps: perceptually uniform, readable by
  colour-blind people, and its yellow-green top stands out from eosin pink and haematoxylin
  purple (turbo's red top does not, and its dark-blue bottom hazes the whole tissue);
- **clear low end**: values below :data:`CLEAR_BELOW` of the range are fully transparent and
  the opacity ramps up to :data:`OPAQUE_FROM`, so weak evidence and glass (zero: skipped tiles)
  show the slide itself, unlike QuPath's maps, which fill every object;
- **0-1 of the map's own range**: the map is shown as ``(raw - min) / (max - min)``, the range
  is stated in the colour bar's layer name and the metadata (``"raw_range"``), so raw values
  (0-0.128 for one model, 0-40 for another) never reach the eye.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image
from napari.utils.colormaps import AVAILABLE_COLORMAPS, Colormap, ensure_colormap

if TYPE_CHECKING:
    from napari_gradcam.core.tiling.slide_tissue import TissueMap

BASE_COLORMAP = "viridis"
CLEAR_BELOW = 0.15
"""Share of the range at the bottom that is fully transparent."""
OPAQUE_FROM = 0.5
"""Share of the range from which the colour is fully opaque (linear ramp from CLEAR_BELOW)."""
DEFAULT_OPACITY = 0.7
"""The layer's opacity: the top of the map still lets the tissue show through a little."""
DISPLAY_RANGE = "0-1 of the map's range (min to max)"
"""How the shown values relate to the raw map, in words (metadata ``"normalisation"``)."""
GLASS_CLEARED = "cells off the tissue mask set to 0 (glass is never painted)"
HEATMAP_COLORMAP = f"{BASE_COLORMAP} (clear low)"
RAMP_STEPS = 64


def heatmap_colormap() -> Colormap:
    """Viridis whose low end is transparent, registered under :data:`HEATMAP_COLORMAP`.

    Registered with napari, so the name saved with a session or chosen in the layer controls
    finds it again.
    """
    if HEATMAP_COLORMAP in AVAILABLE_COLORMAPS:
        return AVAILABLE_COLORMAPS[HEATMAP_COLORMAP]
    base = ensure_colormap(BASE_COLORMAP)
    controls = np.union1d(np.linspace(0.0, 1.0, RAMP_STEPS), [CLEAR_BELOW, OPAQUE_FROM])
    colors = base.map(controls)
    colors[:, 3] = np.clip((controls - CLEAR_BELOW) / (OPAQUE_FROM - CLEAR_BELOW), 0.0, 1.0)
    colormap = Colormap(colors, controls=controls, name=HEATMAP_COLORMAP)
    AVAILABLE_COLORMAPS[HEATMAP_COLORMAP] = colormap
    return colormap


heatmap_colormap()  # registered on import: a session saved with its name reopens with it


def raw_range(cam: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of the finite values of a raw map; ``(0, 1)`` when it has none."""
    finite = np.asarray(cam)[np.isfinite(cam)]
    if finite.size == 0:
        return (0.0, 1.0)
    return (float(finite.min()), float(finite.max()))


def to_display(cam: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The map as 0-1 of its range (float32), and the raw ``(min, max)`` it was scaled from.

    A flat map shows as zeros (nothing stands out, so nothing is painted).
    """
    low, high = raw_range(cam)
    values = np.asarray(cam, dtype=np.float32)
    if high <= low:
        return np.zeros_like(values), (low, high)
    return ((values - low) / (high - low)).astype(np.float32), (low, high)


def clear_glass(
    shown: np.ndarray,
    stride: tuple[float, float],
    origin: tuple[float, float],
    tissue: TissueMap,
) -> np.ndarray:
    """``shown`` with every cell whose centre lies off the tissue set to 0 (clear).

    ``stride`` and ``origin`` place the map on level 0 (pixels per cell, top-left corner of
    the first cell); the tissue mask is found on a low level, so edges follow its pixels.
    """
    mask = np.asarray(tissue.mask, dtype=bool)
    rows, cols = shown.shape[-2:]
    index = []
    for n, step, start, size, side in zip(
        (rows, cols), stride, origin, tissue.pixel_size, mask.shape, strict=True
    ):
        centres = start + (np.arange(n) + 0.5) * step
        index.append(np.clip((centres / size).astype(np.int64), 0, side - 1))
    on_tissue = mask[np.ix_(*index)]
    return np.where(on_tissue, shown, 0.0).astype(np.float32)


def show_colorbar(layer: Image) -> None:
    """Show napari's colour bar of ``layer`` (0 to 1, in the canvas's top right corner)."""
    layer.colorbar.visible = True
    layer.colorbar.font_size = 9


def show_colorbar_soon(layer: Image) -> None:
    """:func:`show_colorbar` at the next turn of the event loop (main thread only).

    napari builds a colour bar (its text and GL buffers) on the GUI thread: done apart from
    the map's own update, neither blocks the window for long.
    """
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, lambda: show_colorbar(layer))
