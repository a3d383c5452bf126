"""The table of the tiles that pushed the slide prediction most, for and against the class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qtpy.QtGui import QColor
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

COLUMNS = ("side", "tile", "score", "y", "x")
HEADER_TIPS = (
    "for: the tile pushed the slide towards the class; against: away from it",
    "the tile's index in the run",
    "the tile's score in the ranking (signed: + for, - against)",
    "the tile centre's row, in the slide layer's units",
    "the tile centre's column, in the slide layer's units",
)
SIDE_COLOURS = {"for": "#00f2d9", "against": "#ff7300"}
"""The side's text colour: that of its drill-down maps (``layers.DRILL_COLOURS``)."""
SHORT_UNITS = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "pixel": "px"}


@dataclass(frozen=True)
class TopTile:
    """One row: the side, the tile's index, its score and its centre in world coordinates."""

    side: str
    tile: int
    score: float
    centre: tuple[float, float]


class TopTilesTable(QTableWidget):
    """The top tiles, strongest first per side.

    Selecting a row (click or keyboard) calls ``on_select`` with its :class:`TopTile`.
    """

    def __init__(self, on_select: Callable[[TopTile], None]) -> None:
        super().__init__(0, len(COLUMNS))
        self.rows: list[TopTile] = []
        self._on_select = on_select
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.setToolTip("select a row to centre the view on its tile and draw its drill-down")
        self.verticalHeader().setVisible(False)
        self.setMinimumHeight(120)  # scrolls inside the dock
        self.currentCellChanged.connect(self._cell_changed)

    def show_tiles(self, rows: Sequence[TopTile], unit: str) -> None:
        """Show ``rows`` in their order; positions are tile centres in ``unit``."""
        self.blockSignals(True)
        self.setCurrentCell(-1, -1)
        self.clearContents()
        self.rows = list(rows)
        self.setRowCount(len(self.rows))
        short = SHORT_UNITS.get(unit, unit)
        for column, (text, tip) in enumerate(
            zip((*COLUMNS[:3], f"y ({short})", f"x ({short})"), HEADER_TIPS, strict=True)
        ):
            item = QTableWidgetItem(text)
            item.setToolTip(tip if column < 3 or not unit else f"{tip} ({unit})")
            self.setHorizontalHeaderItem(column, item)
        for index, row in enumerate(self.rows):
            cells = (row.side, str(row.tile), f"{row.score:+.4g}", *_position(row.centre))
            for column, text in enumerate(cells):
                self.setItem(index, column, QTableWidgetItem(text))
            self.item(index, 0).setForeground(QColor(SIDE_COLOURS.get(row.side, "#f0f1f2")))
        self.blockSignals(False)

    def text(self, row: int, column: int) -> str:
        """The text of a cell."""
        item = self.item(row, column)
        return "" if item is None else item.text()

    def _cell_changed(self, row: int, _column: int, previous: int, _previous_column: int) -> None:
        if 0 <= row < len(self.rows) and row != previous:
            self._on_select(self.rows[row])


def _position(centre: tuple[float, float]) -> tuple[str, str]:
    return f"{centre[0]:.1f}", f"{centre[1]:.1f}"
