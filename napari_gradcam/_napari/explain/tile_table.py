"""A sortable table of explained tiles; selecting a row calls back with the tile's row.

Backed by numpy columns through a Qt item model, so tens of thousands of tiles sort quickly.
Sort by probability to review the most confident calls (possible false positives), by
entropy or roughness to find the noisiest maps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableView

DISPLAY = Qt.ItemDataRole.DisplayRole
RESIZE_ROWS = 64
"""Rows whose text sizes a column (Qt measures 1000 by default: a stall with many tiles)."""


class TileTableModel(QAbstractTableModel):
    """Columns of equal length as a Qt table; sorting reorders rows, not the data."""

    def __init__(self) -> None:
        super().__init__()
        self.columns: dict[str, np.ndarray] = {}
        self._values: list[np.ndarray] = []
        self.order = np.zeros(0, dtype=np.int64)

    def set_columns(self, columns: dict[str, np.ndarray]) -> None:
        """Show ``columns`` (name to (N,) array), in their own order."""
        self.beginResetModel()
        self.columns = {name: np.asarray(values) for name, values in columns.items()}
        self._values = list(self.columns.values())
        lengths = {len(values) for values in self.columns.values()} or {0}
        self.order = np.arange(lengths.pop())
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | None = None) -> int:
        """Number of tiles."""
        return len(self.order)

    def columnCount(self, parent: QModelIndex | None = None) -> int:
        """Number of columns."""
        return len(self.columns)

    def data(self, index: QModelIndex, role: int = DISPLAY) -> str | None:
        """The cell's text (floats with two decimals)."""
        if role != DISPLAY or not index.isValid():
            return None
        value = self._values[index.column()][self.order[index.row()]]
        return f"{value:.2f}" if isinstance(value, np.floating) else str(value)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = DISPLAY
    ) -> str | None:
        """Column names on top, nothing at the side."""
        if role != DISPLAY or orientation != Qt.Orientation.Horizontal:
            return None
        return list(self.columns)[section]

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Order rows by ``column`` (stable)."""
        if not self.columns:
            return
        self.layoutAboutToBeChanged.emit()
        values = self._values[column]
        ranks = np.argsort(values, kind="stable")
        self.order = ranks[::-1] if order == Qt.SortOrder.DescendingOrder else ranks
        self.layoutChanged.emit()

    def row_of(self, view_row: int) -> int:
        """The data row shown at ``view_row``."""
        return int(self.order[view_row])


class TileTable(QTableView):
    """The table view: click a header to sort, select a row to jump to its tile.

    It never widens its dock (Qt's default: its size hint ignores its columns); wide columns
    scroll sideways inside it. ``on_select`` is called with the selected tile's data row.
    """

    def __init__(self, on_select: Callable[[int], None]) -> None:
        super().__init__()
        self.model_ = TileTableModel()
        self.setModel(self.model_)
        self.setSortingEnabled(True)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setResizeContentsPrecision(RESIZE_ROWS)
        self.verticalHeader().setVisible(False)
        self.setMinimumHeight(160)
        self._on_select = on_select
        self.selectionModel().currentRowChanged.connect(self._row_changed)

    def set_columns(self, columns: dict[str, np.ndarray]) -> None:
        """Show new tiles (unsorted until a header is clicked)."""
        self.model_.set_columns(columns)
        self.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)

    def select_row(self, view_row: int) -> None:
        """Select the row shown at ``view_row`` (as a click would)."""
        self.selectRow(view_row)

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self._on_select(self.model_.row_of(current.row()))
