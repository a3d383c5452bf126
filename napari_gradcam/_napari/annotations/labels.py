"""Review labels of annotations and their edge colours (an editable, ordered list)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

RGB = tuple[int, int, int]

DEFAULT_LABELS: dict[str, RGB] = {
    "suspicious": (255, 0, 255),
    "artefact": (160, 160, 160),
    "benign mimic": (0, 200, 255),
    "missed lesion": (150, 60, 255),
    "unclear": (255, 255, 255),
}
"""Colours outside the turbo heatmap's range (magenta, white, grey, violet) or far from
its hot end (sky blue), so outlines stay visible over hot regions."""
EXTRA_COLOURS: tuple[RGB, ...] = (
    (120, 255, 120),
    (255, 90, 90),
    (90, 90, 255),
    (255, 220, 120),
    (180, 120, 255),
)
"""Colours given, in turn, to labels added without one."""
DEFAULT_LABEL = "unclear"


class LabelSet:
    """Label names in order, each with an RGB colour (0-255).

    Parameters
    ----------
    colours : mapping of str to (int, int, int), optional
        Labels and colours; default :data:`DEFAULT_LABELS`.

    Examples
    --------
    >>> labels = LabelSet()
    >>> labels.add("necrosis")
    (120, 255, 120)
    >>> labels.names[-1], labels.rgba("suspicious").tolist()
    ('necrosis', [1.0, 0.0, 1.0, 1.0])
    """

    def __init__(self, colours: Mapping[str, Iterable[int]] | None = None) -> None:
        self._colours: dict[str, RGB] = {}
        for name, colour in (DEFAULT_LABELS if colours is None else colours).items():
            self.add(name, colour)

    @property
    def names(self) -> tuple[str, ...]:
        """Label names in the order they were added."""
        return tuple(self._colours)

    def add(self, name: str, colour: Iterable[int] | None = None) -> RGB:
        """Add ``name`` (kept as is if known, unless a colour is given); return its colour."""
        name = name.strip()
        if not name:
            raise ValueError("a label needs a name")
        if colour is not None:
            self._colours[name] = tuple(int(np.clip(c, 0, 255)) for c in colour)
        elif name not in self._colours:
            used = len([n for n in self._colours if n not in DEFAULT_LABELS])
            self._colours[name] = EXTRA_COLOURS[used % len(EXTRA_COLOURS)]
        return self._colours[name]

    def colour(self, name: str) -> RGB:
        """Return the colour of ``name``, adding the label if it is new."""
        return self._colours.get(name) or self.add(name)

    def rgba(self, name: str) -> np.ndarray:
        """Return the colour of ``name`` as napari's float RGBA."""
        return np.array([*self.colour(name), 255], dtype=float) / 255.0

    def as_dict(self) -> dict[str, list[int]]:
        """Return ``{name: [r, g, b]}`` (for JSON)."""
        return {name: list(colour) for name, colour in self._colours.items()}
