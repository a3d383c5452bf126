"""Refuse NaN or infinite model outputs, naming where they most likely come from.

A model with NaN weights, a card whose std is NaN or 0, or pixels that are NaN give NaN
logits and an all-NaN map. Drawn, that is an empty overlay with ``p=nan``; written, it is a
file that looks like a result. Every path that turns model outputs into a result (``explain``,
``predict``, slide embeddings) checks them here first, so nothing is drawn or written.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard


class NonFiniteError(ValueError):
    """A model output holds NaN or infinite values; the message names the likely cause."""


def check_finite(
    values: torch.Tensor | np.ndarray,
    what: str,
    *,
    module: nn.Module | None = None,
    card: ModelCard | None = None,
    batch: torch.Tensor | None = None,
) -> None:
    """Raise :class:`NonFiniteError` when ``values`` hold NaN or infinity.

    Parameters
    ----------
    values : torch.Tensor or numpy.ndarray
        The outputs to check (logits, a map, embeddings).
    what : str
        What they are, for the message ("the logits", "the Grad-CAM map", ...).
    module, card, batch : optional
        The model, its card and its preprocessed input, searched for the cause.
    """
    tensor = torch.as_tensor(values)
    if not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()):
        return
    causes = likely_causes(module, card, batch)
    raise NonFiniteError(
        f"{what} hold NaN or infinite values, so there is no result to show or save; "
        + "; ".join(causes)
    )


def likely_causes(
    module: nn.Module | None, card: ModelCard | None, batch: torch.Tensor | None
) -> list[str]:
    """Where NaN or infinity most likely comes from, each with what to do.

    The input is blamed only when the weights and the card are finite (a NaN std makes the
    normalised input NaN too).
    """
    causes = []
    if module is not None:
        broken = [
            name
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ]
        if broken:
            causes.append(
                f"the model's weights hold NaN/inf (in {', '.join(broken[:3])}"
                f"{', ...' if len(broken) > 3 else ''}); load weights from a run that did "
                "not diverge"
            )
    if card is not None:
        if any(not math.isfinite(s) or s == 0 for s in card.std):
            causes.append(f"the model card's std {card.std} is NaN, infinite or 0; fix the card")
        if any(not math.isfinite(m) for m in card.mean):
            causes.append(f"the model card's mean {card.mean} is not finite; fix the card")
    if not causes and batch is not None and not bool(torch.isfinite(batch).all()):
        causes.append(
            "the input pixels hold NaN/inf (after the card's normalisation); fill or crop "
            "them out before explaining"
        )
    return causes or [
        "the weights, the card and the input are finite, so the model's forward overflows "
        "(e.g. in float16/bfloat16: try full precision) or divides by zero"
    ]
