"""Slide-model cards: a tile encoder and an aggregator that predicts once per slide.

A card is a JSON file; relative paths are read from the card's folder::

    {
      "name": "demo nuclei-dense slide model",
      "classes": ["negative", "positive"],
      "tile_size": 96,
      "mpp": 0.499,
      "encoder": {"spec": "napari_gradcam.models.demo_encoder:build_demo_encoder",
                  "weights": "demo_net.pt", "card": "demo_net.json"},
      "aggregator": {"factory": "napari_gradcam.core.mil.aggregators:build_attention_mil",
                     "kwargs": {"in_dim": 64, "n_classes": 2},
                     "weights": "mil_demo.safetensors",
                     "attention_module": "attention", "branch_per_class": false,
                     "uses_coords": false}
    }

The encoder is any ``load_model`` spec that returns (N, D) embeddings; the aggregator is a
factory whose module takes (B, N, D) embeddings (and tile coordinates when ``uses_coords``)
and returns (B, classes) logits. Weights are safetensors or ``weights_only`` state dicts.
A card is data: code it names outside what ships with the plugin (see ``code_trust``) runs only
when trusted, and every reference is checked before anything is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.models.code_trust import (
    check_code_trust,
    checked_files,
    code_file,
    function_spec_in_folder,
    is_function_spec,
)
from napari_gradcam.models.loading import (
    BUNDLED,
    LoadedModel,
    build_backbone,
    load_model,
)
from napari_gradcam.models.slide_card import SlideCard
from napari_gradcam.models.timm_models import is_timm_spec
from napari_gradcam.models.weights import load_weights

MPP_TOLERANCE = 0.1
"""A slide whose level 0 is coarser than the card's mpp by more than this share cannot serve it."""


@dataclass(frozen=True)
class SlideModel:
    """A loaded slide model: encoder, aggregator and what feeds them.

    Attributes
    ----------
    name : str
        Human-readable name.
    classes : tuple of str
        Slide classes in logit order.
    tile_size : int
        Side of the square tiles the encoder embeds, in pixels at ``mpp``.
    mpp : float or None
        Microns per pixel the tiles are read at (None: level 0 as it is).
    encoder : LoadedModel
        The tile encoder; its card's input size is ``tile_size`` and its mpp ``mpp``.
    aggregator : torch.nn.Module
        The aggregator, in eval mode on the encoder's device.
    width : int
        Embedding width D.
    attention_module : str or None
        Module of the aggregator whose output is the raw attention scores.
    branch_per_class : bool
        One attention branch per class (CLAM-MB).
    uses_coords : bool
        The aggregator takes the tiles' level-0 coordinates as a second argument.
    source : dict
        The card's JSON with paths resolved (for cache keys and summaries).
    trust_code : bool
        The card was loaded with ``trust_code=True``: workers that load it again (Dask) may too.
    """

    name: str
    classes: tuple[str, ...]
    tile_size: int
    mpp: float | None
    encoder: LoadedModel
    aggregator: nn.Module
    width: int
    attention_module: str | None
    branch_per_class: bool
    uses_coords: bool
    source: dict[str, Any]
    trust_code: bool = False

    def attention_branch(self, target: int) -> int:
        """The attention branch that explains class ``target`` (0 for a shared branch)."""
        return target if self.branch_per_class else 0

    def logits(self, embeddings: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        """Slide logits (1, classes) of one bag (N, D), with coordinates if the model uses them."""
        bag = embeddings[None]
        if self.uses_coords:
            return self.aggregator(bag, None if coords is None else coords[None])
        return self.aggregator(bag)


def load_slide_model(
    path: str | Path, *, device: str = "auto", trust_code: bool = False
) -> SlideModel:
    """Load a slide-model card (see the module docstring) and check that its parts fit.

    Parameters
    ----------
    path : str or Path
        The card (JSON).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    trust_code : bool
        Allow the card to name code outside what ships with the plugin (see ``code_trust``).

    Raises
    ------
    FileNotFoundError
        When the card or a file it names does not exist.
    UntrustedCodeError
        When the card names untrusted code; nothing it names has been imported.
    ValueError
        When a field is missing or wrong (the message names it), the encoder does not return
        (N, D) embeddings, the aggregator does not take D-wide embeddings or does not return
        one logit per class, or the named attention module does not exist.
    """
    card = SlideCard.read(Path(path).expanduser())
    request = card.code_request()
    check_code_trust(request, trust_code=trust_code)
    with checked_files(request):
        encoder = _load_encoder(card, device, trust_code)
        width = embedding_width(encoder, card.tile_size)
        aggregator = _load_aggregator(card).to(_module_device(encoder.module))
    _check_aggregator(aggregator, width, card.classes, card.uses_coords, card.path)
    if card.attention_module is not None:
        _check_attention_module(aggregator, card.attention_module, card.path)
    return SlideModel(
        name=card.name,
        classes=card.classes,
        tile_size=card.tile_size,
        mpp=card.mpp,
        encoder=encoder,
        aggregator=aggregator.eval(),
        width=width,
        attention_module=card.attention_module,
        branch_per_class=card.branch_per_class,
        uses_coords=card.uses_coords,
        source=_resolved(card.data, card.path.parent),
        trust_code=trust_code,
    )


def encoder_spec_in_folder(spec: str, folder: Path) -> str:
    """The encoder spec with the file it names read from the card's ``folder``.

    A ``file.py:function``, a recipe or a TorchScript file is read from ``folder``; bundled
    names, ``timm:NAME`` and ``module:function`` stay as they are.
    """
    if spec in BUNDLED or is_timm_spec(spec) or is_function_spec(spec):
        return function_spec_in_folder(spec, folder)
    return str(code_file(spec, folder))


def check_slide_mpp(model: SlideModel, slide_mpp: float | None) -> None:
    """Refuse a slide that cannot give the card's microns per pixel.

    A slide without mpp metadata cannot be matched (state it, e.g. ``--slide-mpp``); a slide
    whose finest level is coarser than the card's mpp would need upsampling, which invents the
    detail the encoder was trained on.
    """
    if model.mpp is None:
        return
    if slide_mpp is None:
        raise ValueError(
            f"the slide model reads tiles at {model.mpp} µm/px but the slide does not say its "
            "microns per pixel; state it (--slide-mpp) if you know it"
        )
    if slide_mpp > model.mpp * (1 + MPP_TOLERANCE):
        raise ValueError(
            f"the slide model needs {model.mpp} µm/px but the slide's finest level is "
            f"{slide_mpp:.4g} µm/px (coarser); it cannot give the detail the encoder expects"
        )


def embedding_width(encoder: LoadedModel, tile_size: int) -> int:
    """Dry-run the encoder on one blank tile; return D of its (1, D) output, or refuse."""
    probe = torch.zeros(1, encoder.card.in_channels, tile_size, tile_size)
    probe = probe.to(_module_device(encoder.module))
    with frozen_model(encoder.module), torch.inference_mode():
        try:
            out = encoder.module(probe)
        except Exception as err:
            raise ValueError(
                f"the encoder {encoder.spec!r} fails on a {tile_size}-pixel tile: {err}"
            ) from err
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the encoder {encoder.spec!r} returns {shape} for one tile, not an embedding "
            "(1, D); give a backbone that returns pooled features (a classifier or a recipe "
            "with a probe head is not an encoder)"
        )
    return int(out.shape[1])


def _file(folder: Path, name: str | None) -> Path | None:
    return None if name is None else (folder / Path(name).expanduser())


def _load_encoder(card: SlideCard, device: str, trust_code: bool) -> LoadedModel:
    """The encoder, with its card's input size and mpp those of the slide model's tiles.

    The encoder's card keeps no class names: an encoder returns embeddings, not logits.
    """
    folder = card.path.parent
    loaded = load_model(
        encoder_spec_in_folder(card.encoder_spec, folder),
        weights=_file(folder, card.encoder_weights),
        card=_file(folder, card.encoder_card),
        trust_code=trust_code,
        classifier=False,
        device=device,
    )
    tile = (card.tile_size, card.tile_size)
    mpp = loaded.card.mpp if card.mpp is None else card.mpp
    return replace(loaded, card=replace(loaded.card, input_size=tile, mpp=mpp))


def _load_aggregator(card: SlideCard) -> nn.Module:
    folder = card.path.parent
    module = build_backbone(function_spec_in_folder(card.factory, folder), card.kwargs)
    weights = _file(folder, card.aggregator_weights)
    if weights is not None:
        load_weights(module, weights, what="the aggregator")
    return module


def _check_aggregator(
    aggregator: nn.Module, width: int, classes: tuple[str, ...], uses_coords: bool, path: Path
) -> None:
    device = _module_device(aggregator)
    bag = torch.zeros(1, 2, width, device=device)
    args = (bag, torch.zeros(1, 2, 2, device=device)) if uses_coords else (bag,)
    with frozen_model(aggregator), torch.inference_mode():
        try:
            logits = aggregator(*args)
        except Exception as err:
            raise ValueError(
                f"the aggregator of {path} does not take the encoder's {width}-wide "
                f"embeddings: {err}"
            ) from err
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, len(classes)):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"the aggregator of {path} returns {shape} for one bag; the card names "
            f"{len(classes)} classes, so it must return (1, {len(classes)}) logits"
        )


def _check_attention_module(aggregator: nn.Module, name: str, path: Path) -> None:
    names = [n for n, _ in aggregator.named_modules() if n]
    if name not in names:
        raise ValueError(
            f"the card {path} names the attention module {name!r}, which the aggregator does "
            f"not have; its modules: {', '.join(names[:20])}"
        )


def _module_device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _resolved(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The card with its file paths made absolute, code files included."""
    out = json.loads(json.dumps(data))
    for section, key in (("encoder", "weights"), ("encoder", "card"), ("aggregator", "weights")):
        value = out.get(section, {}).get(key)
        if value is not None:
            out[section][key] = str(_file(folder, value).resolve())
    out["encoder"]["spec"] = encoder_spec_in_folder(out["encoder"]["spec"], folder)
    out["aggregator"]["factory"] = function_spec_in_folder(out["aggregator"]["factory"], folder)
    return out
