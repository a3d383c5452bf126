"""The trust & compare dock end to end on maps of the bundled ViT demo."""

from functools import partial

import numpy as np
import pytest
import torch

from napari_gradcam._napari.explain.widget import GradCamWidget
from napari_gradcam._napari.result_layers import METADATA_KEY
from napari_gradcam._napari.trust.layers import CONTRAST_KEY, FEATURES_KEY, TRUST_KEY
from napari_gradcam._napari.trust.widget import TrustWidget
from napari_gradcam.core.explain.methods.attention import RolloutOptions
from napari_gradcam.models.cache import cached_model
from tests._napari.test_result_layers import world_edges
from tests._napari.trust import dock
from tests.core.he_tiles import he_tile

TIMEOUT_MS = 120_000
wait = partial(dock.wait, timeout_ms=TIMEOUT_MS)
click = partial(dock.click, timeout_ms=TIMEOUT_MS)
PLACEMENT = {"scale": (0.5, 0.5), "translate": (100.0, -40.0)}


@pytest.fixture
def vit_checked(make_napari_viewer, qtbot):
    """A viewer with an H&E tile, its ViT-demo heatmap of ``method`` and the trust dock."""

    def make(method: str, **controls) -> tuple:
        viewer = make_napari_viewer()
        viewer.add_image(he_tile("dense"), name="tile", **PLACEMENT)
        explainer = GradCamWidget(viewer)
        explainer.bundled.value = "demo-vit"
        explainer.method.value = method
        for name, value in controls.items():
            explainer.option_controls[name].value = value
        explainer.explain()
        wait(explainer, qtbot)
        widget = TrustWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Grad-CAM trust & compare")
        widget.reset_choices()
        wait(widget, qtbot)
        return viewer, widget, widget.heatmap.value

    return make


def test_gradcam_map_report_features_sweep_and_contrast(vit_checked, qtbot, messages) -> None:
    viewer, widget, heatmap = vit_checked("gradcam")
    image_edges = world_edges(viewer.layers["tile"])
    assert heatmap.data.shape == (12, 12) and heatmap.metadata[METADATA_KEY]["model"] == "demo-vit"
    click(widget.trust_button, widget, qtbot)
    record = heatmap.metadata[TRUST_KEY]
    steps = [step["randomised"][-1] for step in record["sanity"]["steps"]]
    depth = len(cached_model("demo-vit", None).module.blocks)
    last = f"blocks.{depth - 1}"
    assert steps == ["head", "norm", last] and record["layer"] == f"{last}.norm1"
    assert last in widget.details.value and len(widget.plot.figure.axes[0].lines) == 4
    click(widget.features_button, widget, qtbot)
    (stack,) = [layer for layer in viewer.layers if FEATURES_KEY in layer.metadata]
    assert stack.data.shape == (96, 12, 12)
    assert stack.metadata[FEATURES_KEY]["layer"] == f"{last}.norm1"
    assert widget.channels.value.startswith(f"{last}.norm1 for ")
    click(widget.sweep_button, widget, qtbot)
    widget.other_class.value = "stroma"
    click(widget.contrast_button, widget, qtbot)
    assert messages == {"error": [], "warning": []}
    sweep = [layer for layer in viewer.layers if "@ blocks." in layer.name]
    assert [layer.name.rsplit("@ ", 1)[1] for layer in sweep] == [
        f"blocks.{i}.norm1" for i in range(depth)
    ]
    (contrast,) = [layer for layer in viewer.layers if CONTRAST_KEY in layer.metadata]
    for layer in [heatmap, stack, *sweep, contrast]:
        np.testing.assert_allclose(world_edges(layer), image_edges, atol=1e-9)


def test_a_rollout_report_remakes_the_map_with_its_discard_ratio(
    vit_checked, qtbot, messages
) -> None:
    from napari_gradcam.core.explain.pipeline import explain
    from napari_gradcam.core.explain.preprocess import to_batch
    from napari_gradcam.core.tiling.tissue import tissue_mask
    from napari_gradcam.core.trust.faithfulness import deletion_insertion

    _viewer, widget, heatmap = vit_checked("rollout", discard_ratio=0.9)
    assert heatmap.metadata[METADATA_KEY]["discard_ratio"] == 0.9
    widget.sanity_steps.value = 4
    click(widget.trust_button, widget, qtbot)
    assert messages == {"error": [], "warning": []}
    record = heatmap.metadata[TRUST_KEY]
    last = f"blocks.{len(cached_model('demo-vit', None).module.blocks) - 1}"
    assert record["method"] == "rollout" and record["layer"] == f"blocks.0.attn .. {last}.attn"
    tile, loaded = he_tile("dense"), cached_model("demo-vit", None)
    batch = to_batch(tile, loaded.card, torch.device("cpu"))
    curves = {}
    for ratio in (0.9, 0.0):
        cam = explain(loaded, batch, method="rollout", options=RolloutOptions(ratio)).cam[0]
        target = int(record["target"])
        found = deletion_insertion(loaded, batch, cam, target, tissue=tissue_mask(tile))
        curves[ratio] = found.deletion
    np.testing.assert_allclose(record["faithfulness"]["deletion"], curves[0.9], atol=1e-6)
    assert not np.allclose(curves[0.9], curves[0.0], atol=1e-3)
    head_step = record["sanity"]["steps"][0]
    assert head_step["randomised"] == ["head"] and head_step["spearman"] == pytest.approx(1.0)
