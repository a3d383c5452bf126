import numpy as np
import pytest
from qtpy.QtGui import QImage

from napari_gradcam._napari.demo import run_demo


def test_demo_saves_a_screenshot_with_the_heatmap(qapp, tmp_path):
    path = tmp_path / "demo.png"
    assert run_demo("ihc", screenshot=str(path), timeout_s=120) == 0
    image = QImage(str(path))
    assert not image.isNull() and image.width() > 400
    row = [image.pixel(x, image.height() // 2) for x in range(image.width())]
    assert len(np.unique(row)) > 20


def test_demo_rejects_an_unknown_sample():
    with pytest.raises(ValueError, match="unknown sample"):
        run_demo("mri")
