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
from napari_gradcam.core.loaded_model import LoadedModel, ModelKind
from napari_gradcam.core.text_encoder import TextEncoder
from napari_gradcam.models.bundled import BUNDLED, DEMO_DIR
from napari_gradcam.models.code_trust import checked_source
from napari_gradcam.models.probe import load_recipe
from napari_gradcam.models.specs import card_location, is_factory_spec
from napari_gradcam.models.timm_models import (
    TIMM_PREFIX,
    build_timm,
    is_timm_spec,
    pretrained_card_fields,
)
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
        ``demo``, ``demo-vit``, ``module:factory``, ``file.py:factory``, ``timm:NAME``, a
        model recipe (``.json``) or a TorchScript file.
    weights : str or Path, optional
        Weights for a factory or timm model: ``.safetensors``, or a state dict read with
        ``torch.load(weights_only=True)``.
    card : str, Path or ModelCard, optional
        The model card; default: a JSON beside the weights or model file (``specs``), else
        defaults. A ``timm:NAME`` model takes the mean, std and input size its card leaves out
        from timm's ``pretrained_cfg``.
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
    kind: ModelKind
    if spec.endswith(".json"):
        module, recipe_card = load_recipe(_existing_file(spec), build_backbone, trust_code)
        module = module.to(_resolve_device(device)).eval()
        resolved = _checked_card(module, _read_card(card, spec, None, recipe_card), classifier)
        return LoadedModel(module, resolved, spec, "recipe")
    if is_timm_spec(spec) or is_factory_spec(spec):
        module, kind = build_backbone(spec, {}), "factory"
    else:
        module = _load_file(_existing_file(spec), allow_pickle)
        kind = "torchscript" if isinstance(module, torch.jit.ScriptModule) else "pickle"
    if weights is not None:
        load_weights(module, _existing_file(weights))
    module = module.to(_resolve_device(device)).eval()
    seed = pretrained_card_fields(module) if is_timm_spec(spec) else {}
    unfound = ModelCard.from_dict({"name": spec}, defaults=seed)
    resolved = _checked_card(module, _read_card(card, spec, weights, unfound, seed), classifier)
    text = _own_text_encoder(module, resolved)
    return LoadedModel(module=module, card=resolved, spec=spec, kind=kind, text=text)


def _own_text_encoder(module: nn.Module, card: ModelCard) -> TextEncoder | None:
    """The text tower of an embedding model that encodes prompts itself, else ``None``.

    Such a module has ``encode_text(list of str) -> (P, D)`` (its own tokenizer included) and
    ``prompt_template``, the template it was trained with (the bundled ``demo-vlm``).
    """
    encode = getattr(module, "encode_text", None)
    if card.output != "embedding" or not callable(encode):
        return None
    return TextEncoder(encode, getattr(module, "prompt_template", "{}"), module.parameters)


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


def _checked_card(module: nn.Module, card: ModelCard, classifier: bool) -> ModelCard:
    """The card of a classifier, checked against its logits; an encoder's, without classes."""
    if not classifier:
        return replace(card, classes=())
    check_class_count(module, card)
    return card


def check_class_count(module: nn.Module, card: ModelCard) -> None:
    """Refuse a card whose class names do not match the model's logits (one dry forward).

    Runs only when the card names classes: on a blank input of the card's input size (224 x 224
    when it has none). A single-logit (sigmoid) model takes two names; a card whose output is
    ``"dense"`` names the channels of (N, C, h, w) logits. The ValueError names the card's
    ``classes`` (or ``input_size`` when the model fails on that size).
    """
    if not card.classes:
        return
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with torch.inference_mode():
            logits = module(torch.zeros(card.probe_shape, device=device))
    except Exception as err:  # any failure of the user's model on that input
        raise ValueError(
            f"model card {card.name!r}: the model fails on a blank {card.probe_shape[2:]} input "
            f"(the card's 'input_size', 224 x 224 when it has none), so its 'classes' cannot "
            f"be checked against its logits; set 'input_size' to the size it takes: {err}"
        ) from err
    dense = card.output == "dense"
    if not isinstance(logits, torch.Tensor) or logits.ndim != (4 if dense else 2):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        expected = "(N, classes, h, w) dense logits" if dense else "(N, classes) logits"
        raise ValueError(
            f"model card {card.name!r} names classes, but the model returns {shape}, not "
            f"{expected}; remove 'classes' for a model that gives neither, or set 'output'"
        )
    count = logits.shape[1]
    if len(card.classes) != count and not (count == 1 and len(card.classes) == 2):
        raise ValueError(
            f"model card {card.name!r}: 'classes' names {len(card.classes)} classes "
            f"{list(card.classes)}, but the model returns {count} logits; give one name per "
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
