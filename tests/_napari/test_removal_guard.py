"""The plugin's flows that remove layers and add Shapes again never crash napari.

The flows run in a subprocess on the pytest-xvfb display, since the crash they guard
against is a segfault (see ``napari_gradcam/_napari/gl_guard.py``).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtGui import QOpenGLContext

from napari_gradcam._napari.gl_guard import canvas_widget, guard_layer_removal
from tests._napari.removal_flows import FLOWS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_flows_that_remove_and_re_add_layers_exit_cleanly(flow):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-m", "tests._napari.removal_flows", flow],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    assert f"{flow}: ok" in done.stdout


def test_the_canvas_context_is_current_when_napari_flushes_a_removal(make_napari_viewer, qtbot):
    """Without the guard, Qt's compositing context is current here (checked: this fails)."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((32, 32)))
    guard_layer_removal(viewer)
    guard_layer_removal(viewer)
    canvas = canvas_widget(viewer)
    seen: list[bool] = []
    viewer.layers.events.removed.connect(
        lambda _event: seen.append(QOpenGLContext.currentContext() == canvas.context())
    )
    viewer.add_shapes(np.array([[[2, 2], [2, 20], [20, 20]]]), shape_type="polygon")
    for _ in range(5):  # real repaints: Qt composes the window with its own context
        viewer.camera.zoom *= 1.1
        qtbot.wait(50)
    viewer.layers.remove(viewer.layers[-1])
    assert seen == [True]


def test_the_guard_is_connected_once_per_viewer(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    before = len(viewer.layers.events.removing.callbacks)
    guard_layer_removal(viewer)
    guard_layer_removal(viewer)
    assert len(viewer.layers.events.removing.callbacks) == before + 1
