"""Report figures: a region of tissue with its heatmap, annotation outlines and a colour bar.

Rendered off-screen with matplotlib's Agg canvas (no window, no pyplot state). Everything is
drawn in level-0 pixel coordinates with napari's convention (pixel centres at integers), so the
heatmap is placed exactly as in the viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

from napari_gradcam.core.output_files import atomic_write
from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.region_stats import PixelBox, PlacedMap


@dataclass(frozen=True)
class Outline:
    """An annotation to outline: polygons in level-0 pixels, its label and RGB colour."""

    polygons: tuple[Polygon, ...]
    label: str
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class HeatmapFacts:
    """What the colour bar names: method, explained class and layer."""

    method: str
    target: str
    layer: str

    @property
    def caption(self) -> str:
        """One line naming the three."""
        return f"{self.method} for class '{self.target}' at layer '{self.layer}'"


def _outline_path(polygons: Sequence[Polygon]) -> MplPath:
    """One matplotlib path of every ring, in (x, y) order."""
    vertices, codes = [], []
    for polygon in polygons:
        for ring in polygon.rings:
            xy = np.asarray(ring, dtype=float)[:, ::-1]
            vertices += [*xy, xy[0]]
            codes += [MplPath.MOVETO] + [MplPath.LINETO] * (len(xy) - 1) + [MplPath.CLOSEPOLY]
    return MplPath(np.asarray(vertices), codes)


def _draw_tissue(axes: Axes, image: np.ndarray, box: PixelBox) -> None:
    from napari_gradcam.core.explain.preprocess import to_unit_range  # imports torch

    y0, x0, y1, x1 = box
    crop = to_unit_range(np.asarray(image[y0:y1, x0:x1]))
    cmap = "gray" if crop.ndim == 2 or crop.shape[-1] == 1 else None
    extent = (x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5)
    axes.imshow(np.squeeze(crop), cmap=cmap, extent=extent, interpolation="nearest")


def _draw_heatmap(
    axes: Axes, heatmap: PlacedMap, limits: tuple[float, float], opacity: float, clear_zero: bool
) -> AxesImage:
    """Draw the map over its pixels (cell ``i`` spans ``origin + [i f, (i + 1) f)``)."""
    rows, cols = heatmap.cam.shape
    (fy, fx), (oy, ox) = heatmap.stride, heatmap.origin
    extent = (ox - 0.5, ox + cols * fx - 0.5, oy + rows * fy - 0.5, oy - 0.5)
    cam = np.ma.masked_less_equal(heatmap.cam, 0.0) if clear_zero else heatmap.cam
    cmap = colormaps["turbo"].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    return axes.imshow(
        cam,
        cmap=cmap,
        alpha=opacity,
        extent=extent,
        interpolation="bilinear",
        vmin=limits[0],
        vmax=limits[1],
    )


def _draw_outlines(axes: Axes, outlines: Sequence[Outline], width: float) -> None:
    shown: dict[str, tuple[int, int, int]] = {}
    for outline in outlines:
        colour = np.asarray(outline.colour) / 255.0
        patch = PathPatch(_outline_path(outline.polygons), fill=False, edgecolor=colour, lw=width)
        axes.add_patch(patch)
        shown.setdefault(outline.label, outline.colour)
    if shown:
        handles = [Line2D([], [], color=np.asarray(c) / 255.0, lw=width) for c in shown.values()]
        axes.legend(
            handles,
            list(shown),
            loc="upper right",
            fontsize=8,
            framealpha=0.85,
            facecolor="0.3",
            labelcolor="white",
        )


def _frame(axes: Axes, box: PixelBox, facts: HeatmapFacts) -> None:
    """Show exactly ``box`` (outer pixel edges), with pixel axes and the caption."""
    y0, x0, y1, x1 = box
    axes.set_xlim(x0 - 0.5, x1 - 0.5)
    axes.set_ylim(y1 - 0.5, y0 - 0.5)
    axes.set_xlabel("x (level-0 pixels)")
    axes.set_ylabel("y (level-0 pixels)")
    axes.set_title(facts.caption, fontsize=10)


def region_figure(
    image: np.ndarray,
    box: PixelBox,
    heatmap: PlacedMap,
    facts: HeatmapFacts,
    outlines: Sequence[Outline] = (),
    *,
    limits: tuple[float, float] | None = None,
    opacity: float = 0.5,
    clear_zero: bool = False,
) -> Figure:
    """Return a figure of ``box`` of the image with the heatmap, outlines and a colour bar.

    Parameters
    ----------
    image : array-like
        Level-0 pixels (H, W) or (H, W, C); only ``box`` is read.
    box : tuple of int
        ``(y0, x0, y1, x1)`` level-0 pixels to show.
    facts : HeatmapFacts
        Named in the colour bar and the title.
    outlines : sequence of Outline
        Annotations drawn in their label's colour, with a legend.
    limits : tuple of float, optional
        Colour-bar range; default the map's minimum and maximum.
    opacity : float
        Heatmap opacity over the tissue.
    clear_zero : bool
        Leave cells at or below zero transparent (tiles a tiled map skipped as background).
    """
    cam = np.asarray(heatmap.cam, dtype=float)
    limits = limits or (float(cam.min()), float(max(cam.max(), cam.min() + 1e-12)))
    figure = Figure(figsize=(7.0, 6.0), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _draw_tissue(axes, image, box)
    mappable = _draw_heatmap(axes, heatmap, limits, opacity, clear_zero)
    _draw_outlines(axes, outlines, width=2.0)
    _frame(axes, box, facts)
    bar = figure.colorbar(mappable, ax=axes, shrink=0.85)
    bar.solids.set_alpha(1.0)
    bar.set_label(f"{facts.method} value (class '{facts.target}', layer '{facts.layer}')")
    return figure


def save_figure(figure: Figure, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save a figure as PNG, atomically; refuse to replace a file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another name or allow overwrite")
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path
