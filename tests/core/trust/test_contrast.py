import numpy as np
import pytest

import napari_gradcam as ng
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.trust.contrast import class_contrast, explanations_for
from tests.core.he_tiles import demo_model, he_tile


def test_contrast_is_the_signed_difference_of_two_class_maps() -> None:
    demo, tile = demo_model(), he_tile("dense_edge")
    contrast = class_contrast(demo, tile, "nuclei-dense", "stroma", origin=(2, 3))
    dense = ng.explain(demo, tile, target="nuclei-dense").cam
    stroma = ng.explain(demo, tile, target="stroma").cam
    np.testing.assert_allclose(contrast.difference, dense - stroma, atol=1e-6)
    assert contrast.name == "nuclei-dense - stroma"
    reverse = class_contrast(demo, tile, "stroma", "nuclei-dense")
    np.testing.assert_array_equal(reverse.difference, -contrast.difference)
    assert contrast.limit == pytest.approx(np.abs(dense - stroma).max())
    assert contrast.first.origin == (2.0, 3.0) and contrast.first.stride == (8.0, 8.0)


def test_a_class_agnostic_method_gives_no_contrast_and_same_classes_are_refused() -> None:
    demo, tile = demo_model(), he_tile("dense_edge")
    flat = class_contrast(demo, tile, 1, 2, settings=ExplainSettings("eigencam"))
    assert not np.any(flat.difference) and flat.limit == 1.0
    with pytest.raises(ValueError, match="two different classes"):
        class_contrast(demo, tile, "stroma", 1)


def test_explanations_for_every_method_and_class() -> None:
    demo = demo_model()
    maps = list(explanations_for(demo, he_tile("dense"), ["gradcam", "eigencam"], [None, "stroma"]))
    assert [m.method for m in maps] == ["gradcam", "gradcam", "eigencam", "eigencam"]
    assert maps[1].target_names == ("stroma",) and maps[3].target_names == ("stroma",)
    assert all(m.cam.shape == (12, 12) for m in maps)
