"""Hot regions of a heatmap: threshold it, outline each connected region as a simplified polygon.

Polygons are found in the map's own data coordinates (cell centres at integers) and placed on
the image by :func:`napari_gradcam.core.regions.placement.cells_to_pixels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours

from napari_gradcam.core.regions.placement import cells_to_pixels
from napari_gradcam.core.regions.polygons import Polygon, open_ring, ring_area

ThresholdMode = Literal["value", "fraction", "energy"]
THRESHOLD_MODES: tuple[str, ...] = ("energy", "fraction", "value")


def hot_threshold(cam: np.ndarray, mode: ThresholdMode, amount: float) -> float:
    """Return the map value at and above which a cell is hot.

    Parameters
    ----------
    cam : numpy.ndarray
        A 2-D map.
    mode : {"energy", "fraction", "value"}
        ``energy``: the hottest cells that hold ``amount`` (0-1) of the map's energy (the sum
        of its positive values); ``fraction``: ``amount`` (0-1) of the way from the map's
        minimum to its maximum; ``value``: ``amount`` in the map's own units.
    amount : float
        See ``mode``.

    Examples
    --------
    >>> hot_threshold(np.array([[1.0, 2.0], [3.0, 4.0]]), "energy", 0.5)
    3.0
    >>> hot_threshold(np.array([[1.0, 2.0], [3.0, 4.0]]), "fraction", 0.5)
    2.5
    """
    values = np.asarray(cam, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError("the heatmap holds NaN or infinite values")
    if mode == "value":
        return float(amount)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"a {mode} threshold must lie in [0, 1], got {amount}")
    if mode == "fraction":
        return float(values.min() + amount * (values.max() - values.min()))
    if mode != "energy":
        raise ValueError(f"unknown threshold mode {mode!r}; use one of {THRESHOLD_MODES}")
    ordered = np.sort(np.clip(values.ravel(), 0.0, None))[::-1]
    total = ordered.sum()
    if total <= 0:
        return float("inf")
    index = int(np.searchsorted(np.cumsum(ordered), amount * total - 1e-12 * total))
    return float(ordered[min(index, len(ordered) - 1)])


def hot_regions(
    cam: np.ndarray,
    threshold: float,
    *,
    min_cells: float = 2.0,
    tolerance: float = 0.3,
    merge_cells: float = 0.0,
    max_regions: int | None = None,
) -> list[Polygon]:
    """Outline the connected regions of cells at or above ``threshold``.

    Regions are 4-connected. Outlines run along the cells' edges (marching squares cuts the
    corners), along the map's edge where a region touches it, and are then simplified.

    Parameters
    ----------
    cam : numpy.ndarray
        A 2-D map.
    threshold : float
        See :func:`hot_threshold`.
    min_cells : float
        Regions with fewer cells, and holes with a smaller area (in cells), are dropped.
    tolerance : float
        Largest distance (in cells) that simplification may move an outline.
    merge_cells : float
        Hot areas separated by at most about this many cool cells are one region (0: no
        merging; see :func:`_merged`).
    max_regions : int, optional
        Keep only this many regions, those holding the most heat (sum of positive values).

    Returns
    -------
    list of Polygon
        In the map's data coordinates, the region holding the most heat first.
    """
    values = np.asarray(cam, dtype=float)
    hot = _merged(values >= threshold, merge_cells)
    labels, _count = ndimage.label(hot)
    found = []
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        window = tuple(
            slice(max(part.start - 1, 0), min(part.stop + 1, size))
            for part, size in zip(window, hot.shape, strict=True)
        )
        component = labels[window] == index
        if component.sum() < min_cells:
            continue
        corner = np.array([window[0].start, window[1].start], dtype=float)
        polygon = _outline(component, hot.shape, corner, min_cells, tolerance)
        if polygon is not None:
            found.append((float(np.clip(values[window][component], 0, None).sum()), polygon))
    found.sort(key=lambda item: item[0], reverse=True)
    return [polygon for _mass, polygon in found[:max_regions]]


def _merged(hot: np.ndarray, gap: float) -> np.ndarray:
    """``hot`` with gaps of up to about ``gap`` cool cells between hot cells filled.

    A closing with a square of side ``2k + 1``, ``k = ceil(gap / 2)``: it fills gaps up to
    ``2k`` cells wide (along rows and columns; a little more along diagonals).
    """
    if gap <= 0 or not hot.any():
        return hot
    reach = int(np.ceil(gap / 2))
    padded = np.pad(hot, reach)
    closed = ndimage.binary_closing(padded, structure=np.ones((2 * reach + 1,) * 2, bool))
    return closed[reach:-reach, reach:-reach] | hot


def _outline(
    component: np.ndarray,
    map_shape: tuple[int, int],
    corner: np.ndarray,
    min_cells: float,
    tolerance: float,
) -> Polygon | None:
    """Return the polygon of one region given as a mask cut from the map at ``corner``.

    The cut is one cell wider than the region, except at the map's edge. It is padded by
    repeating its edge (which extends only regions touching the map's edge) and then with
    zeros, so that contours close; vertices beyond the map's edge are moved onto it.
    """
    padded = np.pad(np.pad(component.astype(float), 1, mode="edge"), 1)
    low, high = np.full(2, -0.5), np.asarray(map_shape, dtype=float) - 0.5
    rings = []
    for contour in find_contours(padded, 0.5):
        placed = np.clip(contour - 2.0 + corner, low, high)
        ring = open_ring(approximate_polygon(placed, tolerance))
        if len(ring) >= 3:
            rings.append(ring)
    if not rings:
        return None
    areas = [ring_area(ring) for ring in rings]
    outer = int(np.argmax(areas))
    holes = tuple(ring for i, ring in enumerate(rings) if i != outer and areas[i] >= min_cells)
    return Polygon(rings[outer], holes)


def hot_region_polygons(
    cam: np.ndarray,
    stride: Sequence[float],
    origin: Sequence[float] = (0.0, 0.0),
    *,
    mode: ThresholdMode = "energy",
    amount: float = 0.5,
    min_cells: float = 2.0,
    tolerance: float = 0.3,
    min_area_px: float = 0.0,
    merge_px: float = 0.0,
    max_regions: int | None = None,
) -> list[Polygon]:
    """Return the hot regions of a placed map as polygons in level-0 image pixels.

    Parameters
    ----------
    cam : numpy.ndarray
        A 2-D map.
    stride, origin : sequence of float
        The map's placement (image pixels per cell; top-left pixel of the explained crop).
    mode, amount : see :func:`hot_threshold`.
    min_cells, tolerance, max_regions : see :func:`hot_regions`.
    min_area_px : float
        Smallest region kept, in image pixels (the larger of this and ``min_cells`` wins).
    merge_px : float
        Regions separated by at most this many image pixels are merged into one.
    """
    cell_area = float(stride[0]) * float(stride[1])
    threshold = hot_threshold(cam, mode, amount)
    regions = hot_regions(
        cam,
        threshold,
        min_cells=max(min_cells, min_area_px / cell_area),
        tolerance=tolerance,
        merge_cells=merge_px / float(np.sqrt(cell_area)),
        max_regions=max_regions,
    )
    return [
        region.mapped(lambda cells: cells_to_pixels(cells, stride, origin)) for region in regions
    ]
