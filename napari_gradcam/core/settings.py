"""``ExplainSettings``: what one explanation is asked to compute, passed whole from face to core.

The Explain dock, the CLI, tiled runs, the trust checks and the heatmap record all carry this one
frozen record; ``explain(model, image, settings)`` reads it. No torch here: the docks build it at
napari's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from napari_gradcam.core.explain.method_options import MethodOptions

Target = int | str | None | tuple[int | str, ...]


@dataclass(frozen=True)
class ExplainSettings:
    """Method, layer, target, test-time augmentation, precision and the method's own options.

    Attributes
    ----------
    method : str
        A key of ``METHODS``.
    layer : str, optional
        Target layer by module name; ``None``: the card's default, else the last spatial layer.
    target : int, str or tuple, optional
        Class to explain (index or name), one per image, or ``None`` for the top class.
    tta : bool
        Explain the image and its flips and average the flipped-back maps.
    bfloat16 : bool
        Run the masked forwards of the many-forward methods in bfloat16.
    options : MethodOptions
        The method's own options.
    """

    method: str = "gradcam"
    layer: str | None = None
    target: Target = None
    tta: bool = False
    bfloat16: bool = False
    options: MethodOptions = field(default_factory=MethodOptions)

    def replace(self, **changes: Any) -> ExplainSettings:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready facts (the options only where they differ from their defaults)."""
        return {
            "method": self.method,
            "layer": self.layer,
            "target": list(self.target) if isinstance(self.target, tuple) else self.target,
            "tta": self.tta,
            "bfloat16": self.bfloat16,
            **self.options.to_facts(),
        }

    @classmethod
    def from_metadata(cls, facts: Mapping[str, Any]) -> ExplainSettings:
        """Read the facts written by :meth:`to_metadata` (absent keys take their defaults)."""
        target = facts.get("target")
        return cls(
            method=str(facts.get("method", "gradcam")),
            layer=None if facts.get("layer") is None else str(facts["layer"]),
            target=tuple(target) if isinstance(target, list) else target,
            tta=bool(facts.get("tta", False)),
            bfloat16=bool(facts.get("bfloat16", False)),
            options=MethodOptions.from_facts(facts),
        )
