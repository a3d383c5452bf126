"""Slide-model cards: a tile encoder and an aggregator that predicts once per slide.

A card is a JSON file; relative paths are read from the card's folder::

    {
      "name": "demo nuclei-dense slide model",
      "classes": ["negative", "positive"],
      "tile_size": 96,
      "mpp": 0.499,
      "encoder": {"spec": "napari_gradcam.models.demo_encoder:build_demo_encoder",
                  "weights": "demo_net.pt", "card": "demo_net.json"},
      "aggregator": {"spec": "napari_gradcam.core.mil.aggregators:build_attention_mil",
                     "kwargs": {"in_dim": 64, "n_classes": 2},
                     "weights": "mil_demo.safetensors",
                     "attention_module": "attention", "branch_per_class": false,
                     "uses_coords": false}
    }

What each section may hold: :class:`SlideCard`, :class:`EncoderSection` and
:class:`AggregatorSection`. Weights are safetensors or ``weights_only`` state dicts. A card is
data: reading it imports nothing; code it names outside what ships with the plugin (see
``code_trust``) runs only when trusted, and every reference is checked before anything is
imported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.core.json_fields import (
    MAX_SIDE,
    MPP,
    flag_field,
    json_field,
    names_field,
    object_field,
    read_json_object,
    read_record,
    section,
    text_field,
    whole_number,
)
from napari_gradcam.core.mil.attribution import offers_attention
from napari_gradcam.models.code_trust import (
    CodeTrustRequest,
    check_code_trust,
    checked_files,
    code_file,
    factory_reference,
    file_sha256,
    function_spec_in_folder,
    is_function_spec,
)
from napari_gradcam.models.loading import (
    BUNDLED,
    LoadedModel,
    build_backbone,
    load_model,
)
from napari_gradcam.models.timm_models import is_timm_spec
from napari_gradcam.models.weights import load_weights

MPP_TOLERANCE = 0.1
"""A slide whose level 0 is coarser than the card's mpp by more than this share cannot serve it."""


def function_spec_field(value: object, field: str, source: str) -> str:
    """A ``module:function`` or ``file.py:function`` spec."""
    spec = text_field(value, field, source)
    if not is_function_spec(spec):
        raise ValueError(
            f"{source}: {field!r} must be 'module:function' or 'file.py:function', not {spec!r:.80}"
        )
    return spec


@dataclass(frozen=True)
class EncoderSection:
    """A slide-model card's ``encoder``: a ``load_model`` ``spec``, ``weights`` and ``card``.

    The module it loads returns (N, D) embeddings.
    """

    spec: str = json_field(text_field, hint=" (any load_model spec)")
    weights: str | None = json_field(text_field, None)
    card: str | None = json_field(text_field, None)


@dataclass(frozen=True)
class AggregatorSection:
    """A slide-model card's ``aggregator``: (B, N, D) embeddings to (B, classes) logits.

    ``spec`` (``module:function`` or ``file.py:function``; older cards call it ``factory``)
    builds it from ``kwargs``, then ``weights`` are loaded. Attention is read from its
    ``attention_weights(embeddings)`` method when it has one, else from the raw scores its
    ``attention_module`` outputs; ``branch_per_class``: one attention branch per class
    (CLAM-MB); ``uses_coords``: it takes the tiles' level-0 corners as a second argument.
    """

    ALIASES: ClassVar[dict[str, str]] = {"factory": "spec"}

    spec: str = json_field(function_spec_field, hint=" ('module:function')")
    kwargs: dict[str, Any] = json_field(object_field, {})
    weights: str | None = json_field(text_field, None)
    attention_module: str | None = json_field(text_field, None)
    branch_per_class: bool = json_field(flag_field, False)
    uses_coords: bool = json_field(flag_field, False)


@dataclass(frozen=True)
class SlideCard:
    """A slide-model card, read from the file ``path``.

    ``classes`` in logit order, square tiles of ``tile_size`` pixels at ``mpp`` microns per
    pixel, its ``encoder`` and ``aggregator``, and optionally ``name`` (default: the file's
    stem), ``description`` and ``extra``.
    """

    path: Path
    classes: tuple[str, ...] = json_field(names_field)
    tile_size: int = json_field(whole_number(MAX_SIDE, least=8))
    encoder: EncoderSection = json_field(section(EncoderSection))
    aggregator: AggregatorSection = json_field(section(AggregatorSection))
    name: str = json_field(text_field, "")
    mpp: float | None = json_field(MPP, None)
    description: str = json_field(text_field, "")
    extra: dict[str, Any] = json_field(object_field, {})

    @classmethod
    def read(cls, path: Path) -> SlideCard:
        """Read and check a card file.

        Raises FileNotFoundError when there is no such file, ValueError naming the first
        missing, unknown or ill-typed field.
        """
        if not path.is_file():
            raise FileNotFoundError(f"no slide-model card {str(path)!r}")
        data = read_json_object(path, "the slide-model card")
        return read_record(cls, data, f"the slide-model card {path}", path=path)

    def code_request(self) -> CodeTrustRequest:
        """The code this card names outside what ships with the plugin, to check first.

        A recipe named as the encoder is checked on its own when it is loaded.
        """
        folder = self.path.parent
        references = [factory_reference("aggregator.spec", self.aggregator.spec, folder)]
        encoder = self.encoder.spec
        if is_function_spec(encoder) and not is_timm_spec(encoder):
            references.append(factory_reference("encoder.spec", encoder, folder))
        found = tuple(ref for ref in references if ref is not None)
        return CodeTrustRequest(self.path, file_sha256(self.path), found)


@dataclass(frozen=True)
class SlideModel:
    """A loaded slide model: its card's fields (:class:`SlideCard`) with the parts loaded.

    ``encoder``'s card has input size ``tile_size`` and mpp ``mpp`` (None: level 0 as it is);
    ``aggregator`` is in eval mode on the encoder's device; ``width`` is the embedding width D;
    the attention fields are :class:`AggregatorSection`'s. ``source`` is the card's JSON with
    paths resolved (for cache keys and summaries); ``trust_code``: the card was loaded with
    ``trust_code=True``, so workers that load it again (Dask) may too.
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

    @property
    def has_attention(self) -> bool:
        """Whether the aggregator's attention can be read (its own method or a named module)."""
        return self.attention_module is not None or offers_attention(self.aggregator)

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
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    trust_code : bool
        Allow the card to name code outside what ships with the plugin (see ``code_trust``).

    Raises FileNotFoundError when the card or a file it names does not exist;
    UntrustedCodeError when the card names untrusted code (nothing it names has been imported);
    ValueError when a field is missing or wrong (the message names it), the encoder does not
    return (N, D) embeddings, the aggregator does not take D-wide embeddings or does not return
    one logit per class, or the named attention module does not exist.
    """
    card = SlideCard.read(Path(path).expanduser())
    request = card.code_request()
    check_code_trust(request, trust_code=trust_code)
    with checked_files(request):
        encoder = _load_encoder(card, device, trust_code)
        width = embedding_width(encoder, card.tile_size)
        aggregator = _load_aggregator(card).to(module_device(encoder.module))
    aggregator_card = card.aggregator
    _check_aggregator(aggregator, width, card.classes, aggregator_card.uses_coords, card.path)
    if aggregator_card.attention_module is not None:
        _check_attention_module(aggregator, aggregator_card.attention_module, card.path)
    return SlideModel(
        name=card.name or card.path.stem,
        classes=card.classes,
        tile_size=card.tile_size,
        mpp=card.mpp,
        encoder=encoder,
        aggregator=aggregator.eval(),
        width=width,
        attention_module=aggregator_card.attention_module,
        branch_per_class=aggregator_card.branch_per_class,
        uses_coords=aggregator_card.uses_coords,
        source=_resolved(card),
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


def check_slide_mpp(model_mpp: float | None, slide_mpp: float | None) -> None:
    """Refuse a slide that cannot give the microns per pixel a model reads its tiles at.

    A slide without mpp metadata cannot be matched (state it, e.g. ``--slide-mpp``); a slide
    whose finest level is coarser than ``model_mpp`` would need upsampling, which invents the
    detail the encoder was trained on. ``model_mpp`` None: any slide will do.
    """
    if model_mpp is None:
        return
    if slide_mpp is None:
        raise ValueError(
            f"the model reads tiles at {model_mpp} µm/px but the slide does not say its "
            "microns per pixel; state it (--slide-mpp) if you know it"
        )
    if slide_mpp > model_mpp * (1 + MPP_TOLERANCE):
        raise ValueError(
            f"the model needs {model_mpp} µm/px but the slide's finest level is "
            f"{slide_mpp:.4g} µm/px (coarser); it cannot give the detail the encoder expects"
        )


def embedding_width(encoder: LoadedModel, tile_size: int) -> int:
    """Dry-run the encoder on one blank tile; return D of its (1, D) output, or refuse."""
    probe = torch.zeros(1, encoder.card.in_channels, tile_size, tile_size)
    probe = probe.to(module_device(encoder.module))
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
        encoder_spec_in_folder(card.encoder.spec, folder),
        weights=_file(folder, card.encoder.weights),
        card=_file(folder, card.encoder.card),
        trust_code=trust_code,
        classifier=False,
        device=device,
    )
    tile = (card.tile_size, card.tile_size)
    mpp = loaded.card.mpp if card.mpp is None else card.mpp
    return replace(loaded, card=replace(loaded.card, input_size=tile, mpp=mpp))


def _load_aggregator(card: SlideCard) -> nn.Module:
    folder = card.path.parent
    module = build_backbone(
        function_spec_in_folder(card.aggregator.spec, folder), card.aggregator.kwargs
    )
    weights = _file(folder, card.aggregator.weights)
    if weights is not None:
        load_weights(module, weights, what="the aggregator")
    return module


def _check_aggregator(
    aggregator: nn.Module, width: int, classes: tuple[str, ...], uses_coords: bool, path: Path
) -> None:
    device = module_device(aggregator)
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


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (the CPU for a module without any)."""
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _resolved(card: SlideCard) -> dict[str, Any]:
    """The card's JSON with its file paths made absolute, code files included."""
    folder = card.path.parent
    out = asdict(card)  # each key under its current name
    del out["path"]
    for part, key in (("encoder", "weights"), ("encoder", "card"), ("aggregator", "weights")):
        value = out[part][key]
        if value is not None:
            out[part][key] = str(_file(folder, value).resolve())
    out["encoder"]["spec"] = encoder_spec_in_folder(card.encoder.spec, folder)
    out["aggregator"]["spec"] = function_spec_in_folder(card.aggregator.spec, folder)
    return out
