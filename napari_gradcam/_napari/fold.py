"""A fold: a titled section of a dock whose content a click on the title shows or hides.

Docks keep their advanced options and their numbers in folds, so that the main controls and
the verdict fit on a laptop screen beside the other docks.
"""

from __future__ import annotations

from collections.abc import Sequence

from magicgui.widgets import Container, PushButton, Widget

OPEN, CLOSED = "▾", "▸"


class Fold(Container):
    """A title button and a body that it shows or hides (hidden at first by default).

    ``title`` says what the section holds (e.g. ``"advanced options"``); ``labels``: whether
    the body shows its widgets' labels.
    """

    def __init__(
        self,
        title: str,
        widgets: Sequence[Widget],
        *,
        tooltip: str = "",
        expanded: bool = False,
        labels: bool = True,
    ) -> None:
        self.title = title
        self.toggle = PushButton(text=title, tooltip=tooltip or f"show or hide the {title}")
        self.toggle.native.setStyleSheet("text-align: left; padding-left: 6px")
        self.body = Container(widgets=widgets, labels=labels)
        self.body.margins = (12, 0, 0, 0)
        super().__init__(widgets=[self.toggle, self.body], labels=False)
        self.margins = (0, 0, 0, 0)
        self._expanded = False
        self.expanded = expanded
        self.toggle.changed.connect(lambda _value=None: self._flip())

    @property
    def expanded(self) -> bool:
        """Whether the body is shown."""
        return self._expanded

    @expanded.setter
    def expanded(self, value: bool) -> None:
        self._expanded = bool(value)
        self.body.native.setHidden(not self._expanded)
        self.toggle.text = f"{OPEN if self._expanded else CLOSED} {self.title}"

    def _flip(self) -> None:
        self.expanded = not self._expanded
