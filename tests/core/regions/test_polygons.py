"""Polygon helpers built on shapely, checked against direct references."""

import numpy as np
import pytest
import shapely
from hypothesis import given, settings

from napari_gradcam.core.regions.polygons import (
    Polygon,
    from_shapely,
    invalidity,
    nest_rings,
    oriented,
    repaired,
    ring_area,
    to_shapely,
)
from tests.polygon_strategies import polygons


def shoelace(ring: np.ndarray) -> float:
    """The signed shoelace area, vertex by vertex (slow reference); positive when the ring
    turns counter-clockwise with its first coordinate as x."""
    total = 0.0
    for (a0, b0), (a1, b1) in zip(ring, np.roll(ring, -1, axis=0), strict=True):
        total += a0 * b1 - a1 * b0
    return total / 2


@settings(max_examples=30, deadline=None)
@given(polygons())
def test_areas_match_the_shoelace_reference(polygon):
    want = abs(shoelace(polygon.exterior)) - sum(abs(shoelace(h)) for h in polygon.holes)
    assert polygon.area == pytest.approx(want, rel=1e-9)
    assert ring_area(polygon.exterior[::-1]) == pytest.approx(abs(shoelace(polygon.exterior)))
    assert ring_area(polygon.exterior[:2]) == 0.0


@settings(max_examples=30, deadline=None)
@given(polygons())
def test_orientation_follows_the_request_and_keeps_the_shape(polygon):
    for clockwise in (False, True):
        turned = oriented(polygon, exterior_clockwise=clockwise)
        assert bool(shoelace(turned.exterior) < 0) == clockwise
        assert all(bool(shoelace(hole) < 0) != clockwise for hole in turned.holes)
        assert turned.area == pytest.approx(polygon.area)


def test_rings_nest_into_parts_and_holes():
    square = lambda r0, c0, side: np.array(  # noqa: E731
        [[r0, c0], [r0, c0 + side], [r0 + side, c0 + side], [r0 + side, c0]], dtype=float
    )
    rings = [square(0, 0, 30), square(5, 5, 20), square(10, 10, 5), square(0, 50, 10)]
    nested = nest_rings(rings)
    assert [len(p.holes) for p in nested] == [1, 0, 0]
    assert [p.area for p in nested] == [900 - 400, 25, 100]
    assert to_shapely(nested).area == pytest.approx(625)
    assert [p.area for p in from_shapely(to_shapely(nested))] == [500, 25, 100]


def test_invalid_polygons_are_named_and_repaired():
    bow_tie = Polygon(np.array([[0.0, 0.0], [10.0, 10.0], [0.0, 10.0], [10.0, 0.0]]))
    assert "Self-intersection" in invalidity([bow_tie])
    fixed = repaired([bow_tie])
    assert len(fixed) == 2 and sum(p.area for p in fixed) == pytest.approx(50)
    assert invalidity(fixed) is None
    assert from_shapely(shapely.LineString([(0, 0), (1, 1)])) == ()
