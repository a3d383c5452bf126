"""Undo and redo of annotation edits: shapes added, removed, moved or reshaped, relabelled.

napari 0.9's Shapes layer has no undo of its own (only Labels has one), so the dock keeps the
states of its annotations layer after each finished edit: shapes, their types, widths and
features (label, note, statistics). Undo puts the previous state back, redo the next; a new
edit after an undo drops the states that were undone. At most :data:`MAX_STATES` are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from napari.layers import Shapes

MAX_STATES = 100
EDITED_COLUMNS = ("label", "note")
"""Feature columns a user edits; the statistics (recomputed after every edit) are not edits."""


@dataclass(frozen=True)
class LayerState:
    """What an annotations layer holds at one moment."""

    data: tuple[np.ndarray, ...]
    kinds: tuple[str, ...]
    widths: tuple[float, ...]
    features: pd.DataFrame

    @classmethod
    def of(cls, shapes: Shapes) -> LayerState:
        """The layer's state now (copied)."""
        return cls(
            tuple(np.array(vertices, copy=True) for vertices in shapes.data),
            tuple(shapes.shape_type),
            tuple(float(w) for w in shapes.edge_width),
            shapes.features.copy(),
        )

    def same_as(self, other: LayerState) -> bool:
        """Whether ``other`` holds the same shapes, labels and notes."""
        columns = [c for c in EDITED_COLUMNS if c in self.features and c in other.features]
        return (
            self.kinds == other.kinds
            and all(np.array_equal(a, b) for a, b in zip(self.data, other.data, strict=True))
            and self.features[columns].equals(other.features[columns])
        )

    def restore(self, shapes: Shapes) -> None:
        """Put this state back into ``shapes``."""
        shapes.selected_data = set()
        shapes.data = []
        if self.data:
            shapes.add(list(self.data), shape_type=list(self.kinds), edge_width=list(self.widths))
        shapes.features = self.features.copy()


class EditHistory:
    """The states of one annotations layer after each edit, with a position in them."""

    def __init__(self, shapes: Shapes) -> None:
        self.shapes = shapes
        self._states = [LayerState.of(shapes)]
        self._position = 0
        self.restoring = False

    @property
    def can_undo(self) -> bool:
        """Whether an earlier state exists."""
        return self._position > 0

    @property
    def can_redo(self) -> bool:
        """Whether an undone state exists."""
        return self._position < len(self._states) - 1

    def record(self) -> bool:
        """Keep the layer's state after an edit (nothing if unchanged); return whether kept."""
        if self.restoring:
            return False
        state = LayerState.of(self.shapes)
        if state.same_as(self._states[self._position]):
            self._states[self._position] = state  # newer statistics of the same shapes
            return False
        del self._states[self._position + 1 :]
        self._states.append(state)
        if len(self._states) > MAX_STATES:
            del self._states[0]
        self._position = len(self._states) - 1
        return True

    def undo(self) -> bool:
        """Go back one edit; return whether there was one."""
        return self._go(-1) if self.can_undo else False

    def redo(self) -> bool:
        """Redo the last undone edit; return whether there was one."""
        return self._go(1) if self.can_redo else False

    def _go(self, step: int) -> bool:
        self._position += step
        self.restoring = True
        try:
            self._states[self._position].restore(self.shapes)
        finally:
            self.restoring = False
        return True
