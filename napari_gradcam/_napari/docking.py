"""Whether a dock widget was closed while its job ran (napari orphans the closed widget)."""

from __future__ import annotations

from qtpy.QtWidgets import QDockWidget, QWidget


def in_a_dock(widget: QWidget) -> bool:
    """Whether ``widget`` sits in a dock widget (docked or floating), i.e. was not closed."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent is not None


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
