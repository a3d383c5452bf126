"""The options of the attention methods, as the docks, the CLI and heatmap records carry them.

``explain`` takes them as keyword arguments (``discard_ratio`` for rollout, ``attention_head``
for the class-token attention); a value other than the default for a method that does not take
it is refused, so a map never seems to honour a setting it ignored. No torch here: the docks
import this at napari's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from napari_gradcam.core.explain.methods import OPTION_METHODS, get_method


@dataclass(frozen=True)
class MethodOptions:
    """Method options of ``explain`` beyond method, layer and class.

    Attributes
    ----------
    discard_ratio : float
        Attention rollout: the share of each row's weakest attention weights dropped in every
        block (0: the paper's rollout).
    attention_head : int or None
        Class-token attention: one head's map; ``None``: the mean of the heads.
    """

    discard_ratio: float = 0.0
    attention_head: int | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``explain``."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def to_facts(self) -> dict[str, Any]:
        """The options set to other than their defaults (for metadata and JSON records)."""
        default = MethodOptions()
        return {k: v for k, v in self.kwargs().items() if v != getattr(default, k)}

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any]) -> MethodOptions:
        """Read the options from a record's facts (absent keys take their defaults)."""
        head = facts.get("attention_head")
        return cls(
            discard_ratio=float(facts.get("discard_ratio", 0.0) or 0.0),
            attention_head=None if head is None else int(head),
        )

    def label(self) -> str:
        """A short description for layer names, e.g. ``"discard 0.9"``, ``"head 2"``, ``""``."""
        parts = []
        if self.discard_ratio:
            parts.append(f"discard {self.discard_ratio:g}")
        if self.attention_head is not None:
            parts.append(f"head {self.attention_head}")
        return " ".join(parts)

    def for_method(self, method: str) -> MethodOptions:
        """These options with those ``method`` does not take set back to their defaults."""
        taken = get_method(method).options
        default = MethodOptions()
        return MethodOptions(
            **{k: v if k in taken else getattr(default, k) for k, v in self.kwargs().items()}
        )


def check_options(method: str, discard_ratio: float, attention_head: int | None) -> None:
    """Refuse an option set for a method that does not take it, saying which methods do."""
    found = get_method(method)
    given = MethodOptions(discard_ratio, attention_head).to_facts()
    for key in given:
        if key not in found.options:
            users = " and ".join(OPTION_METHODS[key])
            raise ValueError(
                f"{key} applies to method {users} only; {found.title} does not use it: leave "
                f"{key} at its default or choose {users}"
            )
