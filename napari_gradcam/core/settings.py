"""``ExplainSettings``: what one explanation is asked to compute, passed whole from face to core.

The Explain dock, the CLI, tiled runs, the trust checks and the heatmap record all carry this one
frozen record; ``explain(model, image, settings)`` reads it. No torch here: the docks build it at
napari's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from napari_gradcam.core.explain.method_options import (
    NoOptions,
    options_from_facts,
    options_to_facts,
)
from napari_gradcam.core.explain.methods import METHODS
from napari_gradcam.core.targets import Target, target_from_metadata, target_to_metadata


class CommonKeywords(TypedDict, total=False):
    """The fields of :class:`ExplainSettings` that ``explain`` also takes as keywords."""

    method: str
    layer: Any  # a module name, or the module itself
    target: Target
    tta: bool
    bfloat16: bool
    options: Any


@dataclass(frozen=True)
class ExplainSettings:
    """Method, layer, target, test-time augmentation, precision and the method's own options.

    Attributes
    ----------
    method : str
        A key of ``METHODS``.
    layer : str, optional
        Target layer by module name (``explain`` also takes the module); ``None``: the card's
        default, else the last spatial layer. Ignored by methods that use no layer.
    target : Target, optional
        What to explain: a class (index or name), one per image, ``None`` for the top class,
        or a ``core.targets`` kind (``Classes``, ``Contrast``, ``Prompt``, ``LikeEmbedding``,
        ``OutputRegion``).
    tta : bool
        Explain the image and its horizontal, vertical and double flips (one batch, same
        class), flip the maps back and average them.
    bfloat16 : bool
        Run the masked forwards of the methods that can (Score-CAM, occlusion) in bfloat16 on
        a copy of the model: about 2x faster on CPUs with AVX-512 BF16 or AMX and on recent
        GPUs, scores rounded to about three significant digits.
    options : dataclass, optional
        The method's own options (``METHODS[method].options``, e.g. ``OcclusionOptions``);
        ``None``: its defaults.

    Raises
    ------
    ValueError
        For options of another method, or bfloat16 for a method that cannot run in it.
    """

    method: str = "gradcam"
    layer: str | None = None
    target: Target = None
    tta: bool = False
    bfloat16: bool = False
    options: Any = None

    def __post_init__(self) -> None:
        found = METHODS.get(self.method)
        if found is None:  # unknown: ``explain`` refuses it, a record keeps it
            object.__setattr__(self, "options", self.options or NoOptions())
            return
        if self.options is None:
            object.__setattr__(self, "options", found.options())
        if type(self.options) is not found.options:
            raise ValueError(
                f"{found.title} takes {found.options.__name__}, not "
                f"{type(self.options).__name__}: pass options=None for its defaults"
            )
        if self.bfloat16 and not found.bfloat16:
            users = " and ".join(name for name, m in METHODS.items() if m.bfloat16)
            raise ValueError(
                f"bfloat16 speeds up the masked forwards of {users} only; {found.title} runs "
                "in the model's own precision: turn bfloat16 off"
            )

    def replace(self, **changes: Any) -> ExplainSettings:
        """A copy with ``changes`` applied; a new method drops options left at their defaults."""
        new_method = "method" in changes and "options" not in changes
        if new_method and self.options == type(self.options)():
            changes["options"] = None
        return replace(self, **changes)

    def to_metadata(self) -> dict[str, Any]:
        """JSON-ready facts (the options by key, only where they differ from their defaults)."""
        return {
            "layer": self.layer,
            "method": self.method,
            "target": target_to_metadata(self.target),
            "tta": self.tta,
            "bfloat16": self.bfloat16,
            **options_to_facts(self.options),
        }

    @classmethod
    def from_metadata(cls, facts: Mapping[str, Any]) -> ExplainSettings:
        """Read the facts written by :meth:`to_metadata` or earlier versions (absent: defaults)."""
        method = str(facts.get("method", "gradcam"))
        found = METHODS.get(method)
        return cls(
            method=method,
            layer=None if facts.get("layer") is None else str(facts["layer"]),
            target=target_from_metadata(facts.get("target")),
            tta=bool(facts.get("tta", False)),
            bfloat16=bool(facts.get("bfloat16", False)),
            options=options_from_facts(found.options, facts) if found else None,
        )
