"""The read-only table of annotation statistics in the annotations dock (one row per shape)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

COLUMNS: tuple[tuple[str, str], ...] = (
    ("label", "label"),
    ("mean %", "mean"),
    ("max %", "max"),
    ("p95 %", "p95"),
    ("heat %", "energy_share"),
    ("area", "area"),
    ("p(class)", "probability"),
    ("note", "note"),
)
"""(header, feature column) pairs, in display order; "area" shows ``area_um2`` when the
microns per pixel are known, else ``area_px``; "p(class)" is renamed after the class."""
HEADER_TIPS = {
    "label": "the annotation's label (its outline colour)",
    "mean": "mean heat inside the outline, as % of the heatmap's range (0% = its coolest "
    "point, 100% = its hottest)",
    "max": "hottest point inside the outline, as % of the heatmap's range",
    "p95": "95th percentile of the heat inside the outline, as % of the heatmap's range",
    "energy_share": "share of the whole heatmap's heat that lies inside the outline",
    "area": "area in µm² when the image has a pixel size, else in pixels",
    "probability": "the model's probability of the explained class for this region",
    "note": "the annotation's note",
}
SIMILARITY_TIP = "the region's similarity to {} (cosine of the embeddings: 1 alike, 0 unrelated)"
NO_ANSWER_TIP = "the heatmap explains {} of the model's output: no score per annotation"
MAP_SHARE = ("mean", "max", "p95")
"""Columns shown as a share of the heatmap's range."""
NO_VALUE = "-"


def format_value(column: str, value: object, map_range: tuple[float, float] | None = None) -> str:
    """Return a short text for one cell: percentages for energy, 3 significant digits else.

    With ``map_range`` (the heatmap's lowest and highest value), mean, max and p95 are shown
    as a percentage of it.

    Examples
    --------
    >>> format_value("energy_share", 0.1234), format_value("mean", 1234.5)
    ('12.3', '1.23e+03')
    >>> format_value("mean", 0.25, (0.0, 2.0))
    '12'
    >>> format_value("area_px", float("nan")), format_value("note", "look")
    ('-', 'look')
    """
    if isinstance(value, str):
        return value
    if column in MAP_SHARE and map_range is not None:
        low, high = map_range
        value = (float(value) - low) / (high - low) if high > low else math.nan
        return NO_VALUE if math.isnan(value) else f"{100 * value:.0f}"
    if column == "area":
        return area_text(*value)
    number = float(value)
    if math.isnan(number):
        return NO_VALUE
    if column == "energy_share":
        return f"{100 * number:.1f}"
    if column in ("area_px", "area_um2"):
        return f"{number:,.0f}"
    return f"{number:.3g}"


def area_text(area_um2: float, area_px: float) -> str:
    """Return the area in µm² when known, else in pixels.

    Examples
    --------
    >>> area_text(1234.4, 4937.6), area_text(float("nan"), 4937.6)
    ('1,234 µm²', '4,938 px')
    """
    if math.isfinite(area_um2):
        return f"{area_um2:,.0f} µm²"
    return format_value("area_px", area_px) + ("" if math.isnan(area_px) else " px")


class StatsTable(QTableWidget):
    """Statistics per annotation; selecting a row emits its index."""

    row_selected = Signal(int)

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.map_range: tuple[float, float] | None = None
        self.name_class(None)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().setDefaultSectionSize(64)
        self.horizontalHeader().setStretchLastSection(True)
        self.setMinimumHeight(120)
        self.setMaximumHeight(260)
        self.setToolTip("one row per annotation; click a row to go to it")
        self.itemSelectionChanged.connect(self._on_selection)

    def name_class(self, class_name: str | None) -> None:
        """Head the probability column ``p(<class_name>)`` (``p(class)`` when unknown)."""
        self.name_answer(f"p({class_name or 'class'})", HEADER_TIPS["probability"])

    def name_answer(self, header: str, tip: str, explained: str | None = None) -> None:
        """Head the model's answer column ``header`` (e.g. ``similarity``), with ``tip``.

        ``explained``: what the heatmap explains, in words (a prompt, a region), added to the
        tooltips of the heat columns.
        """
        for column, (default, name) in enumerate(COLUMNS):
            text, words = default, HEADER_TIPS[name]
            if name == "probability":
                text, words = header, tip
            elif explained and name in (*MAP_SHARE, "energy_share"):
                words = f"{words}; the heatmap explains {explained}"
            item = QTableWidgetItem(text)
            item.setToolTip(words)
            self.setHorizontalHeaderItem(column, item)

    def header_text(self, name: str) -> str:
        """The header of feature column ``name``."""
        column = [n for _, n in COLUMNS].index(name)
        return self.horizontalHeaderItem(column).text()

    def show_features(self, features: pd.DataFrame, colours: Sequence[Sequence[int]]) -> None:
        """Show one row per shape; ``colours`` are the labels' RGB colours, per row.

        Mean, max and p95 are shown as a share of :attr:`map_range` when it is set.
        """
        selected = self.selected_row()
        self.setRowCount(len(features))
        self.show_rows(features, colours, 0, len(features))
        self.resizeColumnsToContents()
        if selected is not None and selected < len(features):
            self.show_selected(selected)

    def show_rows(
        self, features: pd.DataFrame, colours: Sequence[Sequence[int]], start: int, stop: int
    ) -> None:
        """Show rows ``start`` to ``stop`` (a batch of statistics), redrawing once."""
        self.setUpdatesEnabled(False)
        self.blockSignals(True)
        try:
            for row in range(start, min(stop, len(features), self.rowCount())):
                self._show_row(row, features.iloc[row], colours[row])
        finally:
            self.blockSignals(False)
            self.setUpdatesEnabled(True)

    def _show_row(self, row: int, values: pd.Series, colour: Sequence[int]) -> None:
        for column, (_header, name) in enumerate(COLUMNS):
            value = (
                (values.get("area_um2", math.nan), values.get("area_px", math.nan))
                if name == "area"
                else values.get(name, math.nan)
            )
            item = QTableWidgetItem(format_value(name, value, self.map_range))
            item.setToolTip(item.text())
            if name not in ("label", "note"):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.setItem(row, column, item)
        self.item(row, 0).setBackground(QColor(*colour))
        self.item(row, 0).setForeground(QColor("black"))

    def show_selected(self, row: int | None) -> None:
        """Select ``row`` (``None``: no row) and scroll to it, without emitting ``row_selected``."""
        self.blockSignals(True)
        if row is None or not 0 <= row < self.rowCount():
            self.clearSelection()
        else:
            self.selectRow(row)
            self.scrollToItem(self.item(row, 0))
        self.blockSignals(False)

    def selected_row(self) -> int | None:
        """Return the selected row, or None."""
        rows = self.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def _on_selection(self) -> None:
        row = self.selected_row()
        if row is not None:
            self.row_selected.emit(row)
