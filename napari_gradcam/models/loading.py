"""Load a classifier from a model spec string, with its model card.

Specs
-----
``demo``, ``demo-vit``
    The bundled demo models: a small CNN and a small Vision Transformer.
``package.module:factory`` or ``path/to/file.py:factory``
    A function returning an ``nn.Module``; weights (a state dict) are optional.
``timm:NAME``
    A timm architecture built with random weights (timm must be importable); the weights come
    from ``weights`` (safetensors or a state dict), never from a download.
``smp:NAME``
    A segmentation_models_pytorch architecture (``Unet``, ``FPN``, ``DeepLabV3Plus``, ...)
    built from its card, with a dense output; the weights come from ``weights`` (see
    ``smp_models``).
``open_clip:ARCH``
    An open_clip vision-language architecture (open_clip must be importable), random weights
    and the weights from ``weights``: the image tower is explained, the text tower encodes
    prompts (``LoadedModel.text``).
``hf:FOLDER``
    A Hugging Face ``CLIPModel`` or ``SiglipModel`` built from the folder's ``config.json``,
    the same way; its tokenizer comes from a local folder the card names.
``path/to/recipe.json``
    A model recipe: a backbone (any spec) with a linear or MLP probe head (see ``probe``).
    A recipe is data: code it names outside what ships with the plugin runs only with
    ``trust_code=True`` (see ``code_trust``).
``path/to/model.pt``
    A TorchScript archive; or, only with ``allow_pickle=True``, a whole pickled module.

Weights files are ``.safetensors`` or PyTorch state dicts read with ``weights_only=True``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.targets import output_tensor
from napari_gradcam.core.loaded_model import LoadedModel, ModelKind
from napari_gradcam.core.text_encoder import TextEncoder
from napari_gradcam.models.bundled import BUNDLED, DEMO_DIR
from napari_gradcam.models.code_trust import checked_source
from napari_gradcam.models.probe import load_recipe
from napari_gradcam.models.smp_models import SMP_PREFIX, build_smp, is_smp_spec, smp_card_fields
from napari_gradcam.models.specs import (
    card_location,
    is_factory_spec,
    is_vision_language_spec,
)
from napari_gradcam.models.timm_models import (
    TIMM_PREFIX,
    build_timm,
    is_timm_spec,
    pretrained_card_fields,
)
from napari_gradcam.models.vision_language import build_vision_language
from napari_gradcam.models.weights import load_weights

TORCHVISION_DOWNLOAD_ARGUMENTS = frozenset(
    {"weights", "weights_backbone", "pretrained", "pretrained_backbone"}
)
"""torchvision builder arguments that download weights; weights come only from a weights file."""


def load_model(
    spec: str,
    *,
    weights: str | Path | None = None,
    card: str | Path | ModelCard | None = None,
    allow_pickle: bool = False,
    trust_code: bool = False,
    classifier: bool = True,
    device: str = "auto",
) -> LoadedModel:
    """Load a model from a spec string (see the module docstring), in eval mode on ``device``.

    Parameters
    ----------
    spec : str
        ``demo``, ``demo-vit``, ``module:factory``, ``file.py:factory``, ``timm:NAME``,
        ``smp:NAME``, ``open_clip:ARCH``, ``hf:FOLDER``, a model recipe (``.json``) or a
        TorchScript file.
    weights : str or Path, optional
        Weights for a factory, timm, smp or vision-language model (both towers):
        ``.safetensors``, or a state dict read with ``torch.load(weights_only=True)``.
    card : str, Path or ModelCard, optional
        The model card; default: a JSON beside the weights or model file (``specs``), else
        defaults. Its ``kwargs`` build a factory, timm or smp model. A card file of a
        ``timm:NAME`` model takes the mean, std and input size it leaves out from timm's
        ``pretrained_cfg``; of an ``smp:NAME`` model, a dense output explained at ``decoder``;
        a vision-language model's from its library's preprocessing config, and its output is
        an embedding.
    allow_pickle : bool
        Allow unpickling a whole pickled module. Unpickling runs code from the file: only
        for files you trust.
    trust_code : bool
        Allow a model recipe to name code that does not ship with the plugin or the model
        libraries it supports (see ``code_trust``). A spec given here directly is always run.
    classifier : bool
        The model returns logits: a card's classes must match them (checked with one dry
        forward). False for a tile encoder, whose card's classes are dropped.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ...

    Raises UntrustedCodeError when a recipe names code outside what ships with the plugin and
    ``trust_code`` is not set (nothing it names has been imported); ValueError when a file or
    card is wrong, or the card's classes do not match the model's logits.
    """
    if spec in BUNDLED:
        return replace(_load_bundled(spec, weights, card, device, classifier), spec=spec)
    if is_vision_language_spec(spec):
        return _load_vision_language(spec, weights, card, device)
    kind: ModelKind
    if spec.endswith(".json"):
        module, recipe_card = load_recipe(_existing_file(spec), build_backbone, trust_code)
        module = module.to(_resolve_device(device)).eval()
        resolved = _read_card(card, spec, None, recipe_card)
        _refuse_kwargs(resolved, spec)
        return LoadedModel(module, _checked_card(module, resolved, classifier), spec, "recipe")
    if is_smp_spec(spec) or is_timm_spec(spec) or is_factory_spec(spec):
        given = _read_card(card, spec, weights, ModelCard(name=spec))  # kwargs build the model
        module, kind = _build_model(spec, given), "factory"
    else:
        module = _load_file(_existing_file(spec), allow_pickle)
        kind = "torchscript" if isinstance(module, torch.jit.ScriptModule) else "pickle"
    if weights is not None:
        load_weights(module, _existing_file(weights))
    module = module.to(_resolve_device(device)).eval()
    seed = _architecture_card_fields(spec, module)
    unfound = ModelCard.from_dict({"name": spec}, defaults=seed)
    resolved = _read_card(card, spec, weights, unfound, seed)
    if kind != "factory":
        _refuse_kwargs(resolved, spec)
    resolved = _checked_card(module, resolved, classifier)
    return LoadedModel(module, resolved, spec, kind, text=_own_text_encoder(module, resolved))


def _own_text_encoder(module: nn.Module, card: ModelCard) -> TextEncoder | None:
    """The text tower of an embedding model that encodes prompts itself, else ``None``.

    Such a module has ``encode_text(list of str) -> (P, D)``, its own tokenizer included (the
    bundled ``demo-vlm``); the card's ``text`` section gives the prompt template.
    """
    encode = getattr(module, "encode_text", None)
    if card.output != "embedding" or not callable(encode):
        return None
    template = card.text.template if card.text is not None else "{}"
    return TextEncoder(encode, template, module.parameters)


def _build_model(spec: str, card: ModelCard) -> nn.Module:
    """Build the architecture of an ``smp:``, ``timm:`` or factory spec with the card's kwargs."""
    if is_smp_spec(spec):
        return build_smp(spec.removeprefix(SMP_PREFIX), card)
    return build_backbone(spec, card.kwargs)


def _architecture_card_fields(spec: str, module: nn.Module) -> dict[str, Any]:
    """The card fields an architecture declares: timm's pretrained config, smp's dense output."""
    if is_timm_spec(spec):
        return pretrained_card_fields(module)
    return smp_card_fields() if is_smp_spec(spec) else {}


def _refuse_kwargs(card: ModelCard, spec: str) -> None:
    """Refuse construction ``kwargs`` on the card of a model that is not built from them."""
    if card.kwargs:
        raise ValueError(
            f"model card {card.name!r} gives construction 'kwargs', but {spec!r} is not built "
            "from them (they apply to smp:NAME, timm:NAME and factory specs; a recipe gives its "
            "backbone's in 'backbone.kwargs'); remove 'kwargs' from the card"
        )


def _load_bundled(
    name: str,
    weights: str | Path | None,
    card: str | Path | ModelCard | None,
    device: str,
    classifier: bool,
) -> LoadedModel:
    """A bundled model, with its own weights or with ``weights`` (which must fit it exactly).

    The card is ``card``, else the one beside ``weights``, else the bundled model's.
    """
    factory, stem = BUNDLED[name]
    return load_model(
        factory,
        weights=weights if weights is not None else DEMO_DIR / f"{stem}.pt",
        card=card if isinstance(card, ModelCard) else card_location(name, weights, card),
        classifier=classifier,
        device=device,
    )


def _load_vision_language(
    spec: str, weights: str | Path | None, card: str | Path | ModelCard | None, device: str
) -> LoadedModel:
    """A vision-language model: its image tower, explained, and its prompt encoder.

    The weights fill both towers. The card must leave ``output`` "embedding" (what the image
    tower returns) and name no classes: a prompt asks the question.
    """
    towers = build_vision_language(spec)
    if weights is not None:
        load_weights(towers.model, _existing_file(weights))
    towers.model.to(_resolve_device(device)).eval()
    seed = towers.card_fields
    unfound = ModelCard.from_dict({"name": spec}, defaults=seed)
    resolved = _read_card(card, spec, weights, unfound, seed)
    if resolved.output != "embedding" or resolved.classes:
        raise ValueError(
            f"model card {resolved.name!r}: the image tower of {spec!r} returns an embedding; "
            "leave 'output' out (or set it to \"embedding\") and remove 'classes': ask it with "
            "text prompts instead"
        )
    text = towers.text_encoder(resolved.text)
    return LoadedModel(towers.image_tower, resolved, spec, "factory", text=text)


def _checked_card(module: nn.Module, card: ModelCard, classifier: bool) -> ModelCard:
    """The card of a classifier, checked against its logits; an encoder's, without classes."""
    if not classifier:
        return replace(card, classes=())
    check_class_count(module, card)
    return card


def check_class_count(module: nn.Module, card: ModelCard) -> None:
    """Refuse a card whose class names do not match the model's logits (one dry forward).

    Runs only when the card names classes: on a blank input of the card's input size (224 x 224
    when it has none). Logits are (N, classes), or (N, classes, h, w) for a card whose output
    is ``"dense"``; a single-logit (sigmoid) model takes two names. The ValueError names the
    card's ``classes`` (or ``input_size`` when the model fails on that size).
    """
    if not card.classes:
        return
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with torch.inference_mode():
            output = module(torch.zeros(card.probe_shape, device=device))
    except Exception as err:  # any failure of the user's model on that input
        raise ValueError(
            f"model card {card.name!r}: the model fails on a blank {card.probe_shape[2:]} input "
            f"(the card's 'input_size', 224 x 224 when it has none), so its 'classes' cannot "
            f"be checked against its logits; set 'input_size' to the size it takes: {err}"
        ) from err
    logits = output_tensor(output)
    dense = card.output == "dense"
    if logits.ndim != (4 if dense else 2):
        expected = "dense (N, classes, h, w)" if dense else "(N, classes)"
        do = (
            "set the card's 'output' to 'dense' for a segmentation model"
            if logits.ndim == 4
            else "remove 'classes' for a model that is not a classifier"
        )
        raise ValueError(
            f"model card {card.name!r} names classes, but the model returns "
            f"{tuple(logits.shape)}, not {expected} logits; {do}"
        )
    count = logits.shape[1]
    what = "logit maps" if dense else "logits"
    if len(card.classes) != count and not (count == 1 and len(card.classes) == 2):
        raise ValueError(
            f"model card {card.name!r}: 'classes' names {len(card.classes)} classes "
            f"{list(card.classes)}, but the model returns {count} {what}; give one name per "
            "logit, in logit order (two names, negative first, for a single-logit model)"
        )


def build_backbone(spec: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Build the architecture of a ``timm:NAME`` or factory spec, with construction ``kwargs``."""
    if is_timm_spec(spec):
        return build_timm(spec.removeprefix(TIMM_PREFIX), kwargs)
    if is_factory_spec(spec):
        _refuse_downloads(spec, kwargs)
        return _build_from_factory(spec, kwargs)
    raise ValueError(f"a backbone must be 'timm:NAME' or 'module:factory', not {spec!r}")


def _refuse_downloads(spec: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse torchvision arguments that would download weights (nothing is downloaded here)."""
    if not spec.startswith("torchvision.models"):
        return
    asked = sorted(k for k in TORCHVISION_DOWNLOAD_ARGUMENTS if kwargs.get(k) not in (None, False))
    if asked:
        raise ValueError(
            f"{spec}: the argument(s) {asked} would download weights; give the weights file "
            "instead ('weights' in a recipe or card, --weights on the command line)"
        )


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"no model file {str(path)!r}; give 'demo', 'demo-vit', 'module:factory', "
            "'file.py:factory' or the path of a TorchScript file"
        )
    return path


def _build_from_factory(spec: str, kwargs: Mapping[str, Any]) -> nn.Module:
    target, _, factory_name = spec.rpartition(":")
    module = _import_target(target)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        names = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        raise ValueError(f"{target!r} has no function {factory_name!r}; it has: {names[:10]}")
    try:
        model = factory(**kwargs)
    except Exception as err:
        raise ValueError(f"the model factory {spec!r} failed: {err}") from err
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _import_target(target: str) -> object:
    if target.endswith(".py"):
        path = _existing_file(target)
        source = checked_source(path)  # the bytes a card's check hashed, if a card named it
        name = f"napari_gradcam_user_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        exec(compile(source, str(path), "exec"), module.__dict__)
        return module
    try:
        return importlib.import_module(target)
    except ImportError as err:
        raise ValueError(f"cannot import {target!r} ({err}); is the package installed?") from err


def _load_file(path: Path, allow_pickle: bool) -> nn.Module:
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a PyTorch model file (torch.save and torch.jit.save write zip "
            "archives); give a TorchScript file or 'file.py:factory' with a weights file"
        )
    if _is_torchscript(path):
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise ValueError(f"{path} is not a loadable TorchScript model: {err}") from err
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise ValueError(
                f"{path} holds a pickled Python object (a whole model); unpickling runs code "
                "from the file. If you trust it, allow pickle explicitly (allow_pickle=True, "
                "--allow-pickle); better: save a state dict and give 'file.py:factory'"
            ) from err
        content = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable PyTorch file: {err}") from err
    if isinstance(content, nn.Module):
        return content
    raise ValueError(
        f"{path} holds weights only ({type(content).__name__}); give the architecture as "
        "'file.py:factory' or 'module:factory' with these weights"
    )


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


def _read_card(
    card: str | Path | ModelCard | None,
    spec: str,
    weights: str | Path | None,
    unfound: ModelCard,
    seed: dict[str, Any] | None = None,
) -> ModelCard:
    """The card given, else the one ``card_location`` finds, else ``unfound``.

    ``seed`` fills the fields a card file leaves out (a timm model's pretrained config).
    """
    if isinstance(card, ModelCard):
        return card
    if card is not None:
        return ModelCard.from_json(_existing_file(card), seed)
    path = card_location(spec, weights)
    return ModelCard.from_json(path, seed) if path is not None and path.is_file() else unfound
