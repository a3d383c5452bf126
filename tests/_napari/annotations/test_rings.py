"""Polygons with holes survive napari's one-list drawing."""

from __future__ import annotations

import numpy as np

from napari_gradcam._napari.annotations.rings import decode_rings, encode_rings
from napari_gradcam.core.regions.polygons import Polygon, nest_rings


def test_rings_survive_the_one_list_encoding_napari_draws():
    outer = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0]])
    hole = np.array([[4.0, 4.0], [6.0, 4.0], [6.0, 6.0]])
    other = outer + 20.0
    polygons = [Polygon(outer, (hole,)), Polygon(other)]
    rings = decode_rings(encode_rings(polygons))
    assert len(rings) == 3
    for got, want in zip(rings, [outer, hole, other], strict=True):
        np.testing.assert_array_equal(got, want)
    nested = nest_rings(rings)
    assert [len(p.holes) for p in nested] == [1, 0]
    assert len(decode_rings(outer)) == 1
