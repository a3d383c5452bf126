"""timm architectures by name, built with random weights: weights only ever come from a file.

timm is optional: it is imported when a ``timm:NAME`` spec is loaded, and never downloads
anything here (``pretrained=False`` always). A ``timm:NAME`` model's card takes the mean, std and
input size its card leaves out from the architecture's ``pretrained_cfg``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

TIMM_PREFIX = "timm:"
FILE_ARGUMENTS = frozenset(
    {"pretrained", "checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay"}
)
"""timm arguments that download or read weights; weights come only from a weights file here."""


def is_timm_spec(spec: str) -> bool:
    """Whether ``spec`` names a timm architecture (``timm:NAME``)."""
    return spec.startswith(TIMM_PREFIX) and len(spec) > len(TIMM_PREFIX)


def build_timm(name: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Build timm's architecture ``name`` with random weights and construction ``kwargs``.

    Parameters
    ----------
    name : str
        A timm model name, e.g. ``"vit_large_patch16_224"``.
    kwargs : mapping, optional
        Construction arguments that must match the weights to load, e.g. ``num_classes=0``,
        ``reg_tokens=4``, ``init_values=1e-5``, ``dynamic_img_size=True``.

    Raises
    ------
    ValueError
        When timm cannot be imported, the name is unknown (closest names listed), the
        arguments do not fit the architecture or would make timm download or read weights.
    """
    refused = sorted(FILE_ARGUMENTS & set(kwargs or {}))
    if refused:
        raise ValueError(
            f"timm argument(s) {refused} would download or read weights; give the weights "
            "file instead ('weights' in a recipe or card, --weights on the command line)"
        )
    timm = _import_timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(f"timm has no architecture {name!r}{hint}")
    try:
        return timm.create_model(name, pretrained=False, **dict(kwargs or {}))
    except (TypeError, ValueError, RuntimeError, AssertionError, KeyError) as err:
        raise ValueError(f"timm could not build {name!r} with {dict(kwargs or {})}: {err}") from err


def _import_timm() -> Any:
    try:
        import timm
    except (ImportError, RuntimeError, OSError) as err:
        raise ValueError(
            f"timm cannot be imported here ({err}). Install timm together with a torchvision "
            "built for this torch (pip install torch torchvision timm from the same index), or "
            "give the architecture as 'file.py:factory'"
        ) from err
    return timm


def pretrained_card_fields(module: object) -> dict[str, Any]:
    """Model-card fields from a timm model's ``pretrained_cfg``: mean, std and input size.

    timm sets each architecture's config without downloading anything (``pretrained=False``
    too); the card checks the values.
    """
    config = getattr(module, "pretrained_cfg", None) or {}
    found = {key: tuple(config[key]) for key in ("mean", "std") if config.get(key)}
    if len(config.get("input_size") or ()) == 3:
        found["input_size"] = tuple(config["input_size"][1:])
    return found
