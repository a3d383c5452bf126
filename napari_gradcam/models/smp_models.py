"""segmentation_models_pytorch architectures by name (``smp:NAME``), built with random weights.

segmentation-models-pytorch is optional: it is imported when an ``smp:NAME`` spec is loaded.
The construction arguments come from the model card: its ``kwargs`` (``encoder_name``,
``decoder_channels``, ...), its ``in_channels``, and its class names for ``classes``. The
encoder is always built with ``encoder_weights=None``: weights only ever come from a weights
file, never from a download.

An ``smp:NAME`` model's card says, unless it says otherwise, that the output is dense (one
logit map per class) and that the layer to explain is ``decoder``: the input of the
segmentation head, the last feature map (built from every encoder stage) before the logits.
Grad-CAM there is the class activation map of the segmentation head, as Grad-CAM at a
classifier's last convolution is the CAM of its linear head; the head's own output is the
logit map itself, and the encoder's deepest stage alone misses the decoder's skip connections.
"""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Any

from napari_gradcam.models.timm_models import FILE_ARGUMENTS

if TYPE_CHECKING:
    from torch import nn

    from napari_gradcam.core.card import ModelCard

SMP_PREFIX = "smp:"
SMP_PACKAGE = "segmentation_models_pytorch"
SEGMENTATION_INPUT_LAYER = "decoder"
"""The module of every smp architecture whose output the segmentation head reads."""
TIMM_ENCODER_PREFIX = "tu-"
"""smp's prefix of a timm encoder, which takes construction arguments of its own."""


def is_smp_spec(spec: str) -> bool:
    """Whether ``spec`` names a segmentation_models_pytorch architecture (``smp:NAME``)."""
    return spec.startswith(SMP_PREFIX) and len(spec) > len(SMP_PREFIX)


def build_smp(name: str, card: ModelCard) -> nn.Module:
    """Build smp's architecture ``name`` with random weights, as the model card describes it.

    Parameters
    ----------
    name : str
        An smp architecture class, e.g. ``"Unet"``, ``"FPN"``, ``"DeepLabV3Plus"``.
    card : ModelCard
        Its ``kwargs`` are the construction arguments (``encoder_name``, ...); ``in_channels``
        and the class names give ``in_channels`` and ``classes`` (``kwargs`` may say
        ``"classes": 1`` for a single-logit model with two class names).

    Raises
    ------
    ValueError
        When segmentation-models-pytorch cannot be imported, the architecture is unknown
        (closest names listed), an argument is unknown to it, would download or read weights
        (``encoder_weights``, timm's file arguments), would turn the logits into
        probabilities or contradicts the card; or when smp refuses them.
    """
    smp = _import_smp()
    architectures = {
        key: value
        for key, value in vars(smp).items()
        if inspect.isclass(value) and issubclass(value, smp.base.SegmentationModel)
    }
    if name not in architectures:
        close = difflib.get_close_matches(name, list(architectures), n=3, cutoff=0.4)
        hint = f"closest: {', '.join(close)}" if close else f"it has {', '.join(architectures)}"
        raise ValueError(f"segmentation_models_pytorch has no architecture {name!r}; {hint}")
    kwargs = _construction_kwargs(architectures[name], card)
    try:
        return architectures[name](encoder_weights=None, **kwargs)
    except (TypeError, ValueError, KeyError, RuntimeError, AssertionError) as err:
        raise ValueError(
            f"segmentation_models_pytorch could not build {name!r} with {kwargs}: {err}"
        ) from err


def _construction_kwargs(architecture: type, card: ModelCard) -> dict[str, Any]:
    """The card's ``kwargs`` with ``in_channels`` and ``classes``, checked against the class."""
    kwargs = dict(card.kwargs)
    source = f"model card {card.name!r}: 'kwargs'"
    refused = sorted(FILE_ARGUMENTS & set(kwargs))  # a tu- encoder hands them to timm
    if kwargs.pop("encoder_weights", None) is not None:
        refused.insert(0, "encoder_weights")
    if refused:
        raise ValueError(
            f"{source}: {refused} would download or read weights; remove them and give the "
            "weights file instead (weights= / --weights)"
        )
    if kwargs.get("activation") is not None:
        raise ValueError(
            f"{source}: 'activation' {kwargs['activation']!r} turns the logits into "
            "probabilities, and the explained score is a logit; remove it (the same weights "
            "load without it)"
        )
    parameters = inspect.signature(architecture).parameters
    named = [key for key, p in parameters.items() if p.kind is not p.VAR_KEYWORD]
    unknown = sorted(set(kwargs) - set(named))
    encoder = str(kwargs.get("encoder_name", parameters["encoder_name"].default))
    if unknown and not encoder.startswith(TIMM_ENCODER_PREFIX):
        valid = [key for key in named if key != "encoder_weights"]
        raise ValueError(
            f"{source}: {architecture.__name__} takes no argument(s) {unknown}; it takes {valid}"
        )
    if kwargs.setdefault("in_channels", card.in_channels) != card.in_channels:
        raise ValueError(
            f"{source}: 'in_channels' {kwargs['in_channels']} contradicts the card's "
            f"'in_channels' {card.in_channels}; give it once, as the card's 'in_channels'"
        )
    names = card.classes
    count = kwargs.setdefault("classes", len(names) or parameters["classes"].default)
    if names and count != len(names) and not (count == 1 and len(names) == 2):
        raise ValueError(
            f"{source}: 'classes' {count} contradicts the card's {len(names)} class names "
            f"{list(names)}; give one name per output channel (two names, negative first, for "
            "'classes': 1, a single-logit map)"
        )
    return kwargs


def _import_smp() -> Any:
    try:
        import segmentation_models_pytorch as smp
    except (ImportError, RuntimeError, OSError) as err:
        raise ValueError(
            f"segmentation_models_pytorch cannot be imported here ({err}). Install "
            "segmentation-models-pytorch (pip install segmentation-models-pytorch, with a "
            "torchvision built for this torch), or give the architecture as 'file.py:factory'"
        ) from err
    return smp


def smp_card_fields() -> dict[str, Any]:
    """Card fields of every smp architecture: a dense output, explained at ``decoder``."""
    return {"output": "dense", "default_layer": SEGMENTATION_INPUT_LAYER}
