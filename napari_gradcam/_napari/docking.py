"""Where the plugin's docks sit: tabbed together, and whether one was closed mid-job.

napari docks each widget opened from the Plugins menu below the others (``tabify=False``),
so four docks stacked need far more than a 1080 px screen. Each dock of the plugin calls
:func:`tab_plugin_docks`; once docked it joins the plugin's docks already in its area as a
tab. napari orphans a closed dock's widget, which :class:`DockWatch` notices.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

PLUGIN_TITLE_SUFFIX = "(napari-gradcam)"
"""napari titles a manifest dock "<widget> (<plugin>)"."""
DOCK_PROPERTY = "napari_gradcam_dock"


def dock_of(widget: QWidget) -> QDockWidget | None:
    """The dock widget holding ``widget``, or ``None``."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def is_plugin_dock(dock: QDockWidget) -> bool:
    """Whether ``dock`` holds one of the plugin's widgets."""
    inner = dock.widget()
    marked = inner is not None and (
        bool(inner.property(DOCK_PROPERTY))
        or any(bool(child.property(DOCK_PROPERTY)) for child in inner.findChildren(QWidget))
    )
    return marked or dock.windowTitle().endswith(PLUGIN_TITLE_SUFFIX)


def tabify_with_plugin_docks(widget: QWidget) -> bool:
    """Put the dock of ``widget`` in a tab beside the plugin's other docks in its area.

    Return whether it was (not when undocked, floating, or alone in its area).
    """
    dock = dock_of(widget)
    window = dock.parentWidget() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return False
    area = window.dockWidgetArea(dock)
    others = [
        other
        for other in window.findChildren(QDockWidget)
        if other is not dock
        and not other.isHidden()
        and not other.isFloating()
        and window.dockWidgetArea(other) == area
        and is_plugin_dock(other)
    ]
    if not others:
        return False
    window.tabifyDockWidget(others[-1], dock)
    dock.show()
    dock.raise_()
    return True


class _WindowWatch(QObject):
    """Tabs each plugin dock added to a main window beside the plugin's others."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """On a new dock, tab it once the main window has placed it (after this event)."""
        child = event.child() if event.type() == QEvent.Type.ChildAdded else None
        if isinstance(child, QDockWidget):
            QTimer.singleShot(0, lambda: _tabify_dock(child))
        return False


def _tabify_dock(dock: QDockWidget) -> None:
    inner = dock.widget()
    if inner is not None and is_plugin_dock(dock):
        tabify_with_plugin_docks(inner)


class _DockedWatch(QObject):
    """Once the widget is docked: tab it, and watch its window for the plugin's next docks."""

    def __init__(self, widget: QWidget) -> None:
        super().__init__(widget)
        self._widget = widget

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """On a new parent, act once the main window has placed the dock."""
        if event.type() == QEvent.Type.ParentChange:
            QTimer.singleShot(0, self._docked)
        return False

    def _docked(self) -> None:
        dock = dock_of(self._widget)
        window = dock.parentWidget() if dock is not None else None
        if not isinstance(window, QMainWindow):
            return
        if not window.property(DOCK_PROPERTY):
            window.setProperty(DOCK_PROPERTY, True)
            window.installEventFilter(_WindowWatch(window))
        for other in window.findChildren(QDockWidget):  # those opened before this one, too
            if other is not dock:
                _tabify_dock(other)
        tabify_with_plugin_docks(self._widget)


def tab_plugin_docks(widget: QWidget) -> None:
    """Mark ``widget`` as a plugin dock and tab it beside the plugin's other docks.

    Once docked, the plugin's docks opened later in the same window join the tabs too.
    """
    widget.setProperty(DOCK_PROPERTY, True)
    widget.installEventFilter(_DockedWatch(widget))


def in_a_dock(widget: QWidget) -> bool:
    """Whether ``widget`` sits in a dock widget (docked or floating), i.e. was not closed.

    A widget whose Qt object was already deleted (its dock closed and destroyed) is in none.
    """
    try:
        return dock_of(widget) is not None
    except RuntimeError:  # "wrapped C/C++ object ... has been deleted"
        return False


class DockWatch:
    """Tells whether the dock of ``widget`` was closed since the current job started.

    A widget that was not docked when the job started (e.g. embedded elsewhere) is never
    considered closed.
    """

    def __init__(self, widget: QWidget) -> None:
        self._widget = widget
        self._docked = False

    def start(self) -> None:
        """Remember whether the widget is docked now, as a job starts."""
        self._docked = in_a_dock(self._widget)

    @property
    def closed(self) -> bool:
        """Whether the widget left its dock since :meth:`start`."""
        return self._docked and not in_a_dock(self._widget)
