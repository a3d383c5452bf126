"""The plugin's docks share the window: tabbed together, they fit a 1920 x 1080 screen."""

import pytest
from qtpy.QtWidgets import QApplication, QDockWidget

from napari_gradcam._napari.docking import is_plugin_dock

PLUGIN = "napari-gradcam"
DOCKS = ("Grad-CAM", "Grad-CAM annotations", "Grad-CAM trust & compare", "Slide-level model (MIL)")
SCREEN = (1920, 1080)


@pytest.mark.parametrize("order", [DOCKS, DOCKS[::-1]], ids=["explain-first", "explain-last"])
def test_all_four_docks_are_tabbed_and_fit_a_full_hd_screen(make_napari_viewer, qtbot, order):
    viewer = make_napari_viewer()
    window = viewer.window._qt_window
    docks = []
    for name in order:
        dock, _widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        docks.append(dock)
        QApplication.processEvents()
    qtbot.wait(50)
    assert all(is_plugin_dock(dock) for dock in docks)
    tabbed = set(window.tabifiedDockWidgets(docks[0]))
    assert tabbed == set(docks[1:]), "one tab group, not four docks stacked"
    assert [d for d in window.findChildren(QDockWidget) if d in docks and d.isFloating()] == []
    needed = window.minimumSizeHint()
    assert needed.height() <= SCREEN[1] and needed.width() <= SCREEN[0]
    window.resize(*SCREEN)
    QApplication.processEvents()
    assert window.height() <= SCREEN[1]
