import numpy as np
from napari.layers import Layer

from napari_gradcam._napari.sample_data import he_sample, ihc_sample
from napari_gradcam.data import HE_MPP


def test_he_sample_is_an_rgb_image_in_microns():
    ((data, kwargs, kind),) = he_sample()
    assert kind == "image" and data.dtype == np.uint8 and data.shape[-1] == 3
    layer = Layer.create(data, kwargs, kind)
    assert layer.rgb and layer.metadata["mpp"] == HE_MPP
    np.testing.assert_allclose(layer.scale, (HE_MPP, HE_MPP))
    assert str(layer.units[0]) == "micrometer"


def test_ihc_sample_is_an_rgb_tile():
    ((data, kwargs, kind),) = ihc_sample()
    assert data.shape == (512, 512, 3)
    assert Layer.create(data, kwargs, kind).rgb
