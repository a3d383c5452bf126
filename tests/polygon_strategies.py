"""Hypothesis strategies for polygons with holes, labels and notes (shared by tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from napari_gradcam.core.regions.polygons import Polygon

coordinate = st.floats(20.0, 480.0, allow_nan=False)
label = st.sampled_from(["suspicious", "artefact", "benign mimic", "missed lesion", "unclear"])
note = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30)


def _star(centre: np.ndarray, radius: float, jitter: list[float]) -> np.ndarray:
    """A star-shaped ring: evenly spaced angles nudged by ``jitter``, radii from ``radius``."""
    n = len(jitter)
    angles = 2 * np.pi * (np.arange(n) + 0.3 * np.asarray(jitter)) / n
    radii = radius * (0.75 + 0.25 * np.abs(np.asarray(jitter)))
    return centre + np.column_stack([radii * np.sin(angles), radii * np.cos(angles)])


@st.composite
def polygons(draw: st.DrawFn, max_vertices: int = 10) -> Polygon:
    """A star polygon of radius 4-18 px, sometimes with a star hole well inside it."""
    centre = np.array([draw(coordinate), draw(coordinate)])
    radius = draw(st.floats(4.0, 18.0))
    jitter = st.floats(-1.0, 1.0, allow_nan=False)
    outer = _star(centre, radius, draw(st.lists(jitter, min_size=4, max_size=max_vertices)))
    if not draw(st.booleans()):
        return Polygon(outer)
    hole = _star(centre, radius * 0.15, draw(st.lists(jitter, min_size=3, max_size=6)))
    return Polygon(outer, (hole,))
