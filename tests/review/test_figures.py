import numpy as np
import pytest
from matplotlib.colorbar import Colorbar

from napari_gradcam.core.regions.polygons import Polygon
from napari_gradcam.core.regions.region_stats import PlacedMap
from napari_gradcam.review.figures import HeatmapFacts, Outline, region_figure, save_figure

FACTS = HeatmapFacts("gradcam", "nuclei-dense", "features.14")


@pytest.fixture
def figure(rgb_image):
    cam = np.linspace(0, 2, 12 * 10).reshape(12, 10)
    heatmap = PlacedMap(cam, (8.0, 8.0), (0.0, 0.0))
    ring = np.array([[10.0, 10.0], [10.0, 40.0], [40.0, 40.0], [40.0, 10.0]])
    hole = np.array([[20.0, 20.0], [20.0, 30.0], [30.0, 30.0]])
    outlines = [Outline((Polygon(ring, (hole,)),), "suspicious", (255, 0, 255))]
    return region_figure(rgb_image, (4, 8, 60, 70), heatmap, FACTS, outlines)


def test_the_figure_frames_the_region_and_names_what_it_shows(figure):
    axes, bar_axes = figure.axes
    assert axes.get_xlim() == (7.5, 69.5) and axes.get_ylim() == (59.5, 3.5)
    assert axes.get_title() == "gradcam for class 'nuclei-dense' at layer 'features.14'"
    _tissue, heat = axes.images
    assert heat.get_extent() == [-0.5, 79.5, 95.5, -0.5]  # 10 x 12 cells of 8 pixels
    assert heat.get_clim() == (0.0, 2.0) and heat.get_cmap().name == "turbo"
    assert len(axes.patches) == 1 and axes.get_legend().get_texts()[0].get_text() == "suspicious"
    label = bar_axes.get_ylabel()
    assert all(word in label for word in ("gradcam", "nuclei-dense", "features.14"))
    assert isinstance(heat.colorbar, Colorbar)


def test_the_png_is_written_once_unless_replacing_is_asked(figure, tmp_path):
    path = save_figure(figure, tmp_path / "region.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileExistsError):
        save_figure(figure, path)
    save_figure(figure, path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["region.png"]
