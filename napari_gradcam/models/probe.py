"""A linear or MLP probe on a frozen backbone, described by a model recipe (JSON).

This is how classifiers on pathology foundation models (UNI, Virchow2, H-optimus, Phikon, ...)
are usually built: the backbone's embedding, then a small head trained on it. A recipe names
both and where their weights are::

    {
      "card": {"name": "tumour probe on UNI", "classes": ["normal", "tumour"],
               "input_size": [224, 224], "mpp": 0.5},
      "backbone": {"spec": "timm:vit_large_patch16_224",
                   "kwargs": {"num_classes": 0, "init_values": 1e-5, "dynamic_img_size": true},
                   "weights": "uni/pytorch_model.bin"},
      "head": {"layers": [1024, 2], "activation": "gelu", "weights": "head.safetensors"}
    }

Relative paths (weights, a card file, a ``file.py:function`` spec) are read from the recipe's
folder. ``card`` may also be the path of a card file. A construction argument that must be a
Python object is written ``{"import": "module.name"}`` (e.g.
``{"import": "timm.layers.SwiGLUPacked"}``). A recipe is data: a backbone or import outside
what ships with the plugin and its model libraries runs only when trusted (see ``code_trust``);
every reference is checked before anything is imported. A backbone that returns tokens (N, T, C)
names how they become the embedding with ``"pool"``: ``"token"`` (the class token), ``"avg"``
(the mean of the patch tokens) or ``"token+avg"`` (both, concatenated, as Virchow2 does); the
number of prefix tokens is read from the backbone's ``num_prefix_tokens``.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.json_fields import (
    MAX_WIDTH,
    choice_field,
    json_field,
    object_field,
    read_json_object,
    read_record,
    section,
    text_field,
)
from napari_gradcam.models.code_trust import (
    CodeTrustRequest,
    check_code_trust,
    checked_files,
    factory_reference,
    file_sha256,
    function_spec_in_folder,
    import_reference,
    is_function_spec,
)
from napari_gradcam.models.timm_models import is_timm_spec
from napari_gradcam.models.weights import load_weights, read_state_dict

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}
POOLS = ("token", "avg", "token+avg")


class ProbeClassifier(nn.Module):
    """``head(backbone(x))``: logits from a pooled (N, D) embedding.

    The backbone keeps its own attribute names (``backbone.blocks.11.norm1``, ...), so its
    layers can be explained like those of any model.
    """

    def __init__(self, backbone: nn.Module, head: nn.Sequential, pool: str | None = None) -> None:
        super().__init__()
        if pool is not None and pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; use one of {list(POOLS)}")
        self.backbone = backbone
        self.head = head
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of images (N, C, H, W)."""
        embedding = self.backbone(x)
        if self.pool is not None:
            embedding = pool_tokens(embedding, _prefix_tokens(self.backbone), self.pool)
        if not isinstance(embedding, torch.Tensor) or embedding.ndim != 2:
            shape = tuple(embedding.shape) if isinstance(embedding, torch.Tensor) else embedding
            raise ValueError(
                f"the backbone returns {shape}, not pooled (N, D) embeddings; build it without "
                "a classifier head and with pooling (timm: num_classes=0)"
            )
        width = self.head[0].in_features
        if embedding.shape[1] != width:
            raise ValueError(
                f"the backbone gives {embedding.shape[1]}-d embeddings, but the head's first "
                f"layer takes {width}; set head.layers[0] to {embedding.shape[1]}"
            )
        return self.head(embedding)


def pool_tokens(tokens: torch.Tensor, prefix: int, pool: str) -> torch.Tensor:
    """Embedding (N, D) of tokens (N, T, C): class token, mean patch token, or both.

    Examples
    --------
    >>> tokens = torch.arange(12.0).reshape(1, 4, 3)  # 1 class token + 3 patch tokens
    >>> pool_tokens(tokens, 1, "token+avg")
    tensor([[0., 1., 2., 6., 7., 8.]])
    """
    if tokens.ndim != 3:
        raise ValueError(
            f"pool {pool!r} needs tokens (N, T, C) from the backbone, got {tuple(tokens.shape)}; "
            "remove 'pool' for a backbone that already pools"
        )
    parts = []
    if pool in ("token", "token+avg"):
        if prefix < 1:
            raise ValueError("pool 'token' needs a class token; this backbone has none: use 'avg'")
        parts.append(tokens[:, 0])
    if pool in ("avg", "token+avg"):
        parts.append(tokens[:, prefix:].mean(dim=1))
    return torch.cat(parts, dim=1)


def _prefix_tokens(backbone: nn.Module) -> int:
    prefix = getattr(backbone, "num_prefix_tokens", None)
    if not isinstance(prefix, int):
        raise ValueError(
            "the backbone does not declare num_prefix_tokens, so its class and register tokens "
            "cannot be told from the patch tokens; pool inside the backbone instead"
        )
    return prefix


def build_head(layers: Sequence[int], activation: str = "gelu") -> nn.Sequential:
    """Linear layers of widths ``layers`` (embedding width first), ``activation`` between them.

    Examples
    --------
    >>> build_head([8, 4, 2], "relu")
    Sequential(
      (0): Linear(in_features=8, out_features=4, bias=True)
      (1): ReLU()
      (2): Linear(in_features=4, out_features=2, bias=True)
    )
    """
    if len(layers) < 2 or any(int(width) < 1 for width in layers):
        raise ValueError(
            f"head layers must list the embedding width, then each layer's width, e.g. "
            f"[1024, 2]; got {list(layers)}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown head activation {activation!r}; use one of {list(ACTIVATIONS)}")
    modules: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(layers)):
        if index:
            modules.append(ACTIVATIONS[activation]())
        modules.append(nn.Linear(int(width_in), int(width_out)))
    return nn.Sequential(*modules)


def load_head_weights(head: nn.Sequential, path: Path) -> None:
    """Load a head's weights, named as in the head or as its linear layers in file order.

    A head trained elsewhere names its tensors its own way (``weight``/``bias`` for a single
    linear layer, ``fc1.weight``, ...). When the names differ, the file's 2-D weights and their
    biases are matched to the linear layers in order, and only when every shape fits.
    """
    state = read_state_dict(path)
    if set(state) == set(head.state_dict()):
        head.load_state_dict(state)
        return
    linears = [module for module in head if isinstance(module, nn.Linear)]
    weight_keys = [key for key, value in state.items() if value.ndim == 2]
    expected = [tuple(linear.weight.shape) for linear in linears]
    found = [tuple(state[key].shape) for key in weight_keys]
    if found != expected:
        raise ValueError(
            f"the head weights in {path} do not fit the head: its linear layers need weights "
            f"of shapes {expected} (keys {list(head.state_dict())}), the file has {found}"
        )
    for linear, key in zip(linears, weight_keys, strict=True):
        bias_key = key.rsplit(".", 1)[0] + ".bias" if "." in key else "bias"
        linear.weight.data.copy_(state[key])
        if bias_key in state:
            linear.bias.data.copy_(state[bias_key])


def load_recipe(
    path: Path,
    build_backbone: Callable[[str, Mapping[str, Any]], nn.Module],
    trust_code: bool = False,
) -> tuple[ProbeClassifier, ModelCard]:
    """Build the probe classifier and its card from a recipe file (see the module docstring).

    ``build_backbone(spec, kwargs)`` builds the backbone from any model spec. Code the recipe
    names outside what ships with the plugin runs only with ``trust_code`` (or when the user
    trusted this recipe's content before).

    Raises UntrustedCodeError when the recipe names untrusted code (nothing it names has been
    imported), ValueError when a field is missing or has the wrong type (the message names it).
    """
    recipe = Recipe.read(path)
    request = recipe.code_request()
    check_code_trust(request, trust_code=trust_code)
    folder = path.parent
    backbone_section, head_section = recipe.backbone, recipe.head
    with checked_files(request):
        backbone = build_backbone(recipe.resolved_spec(), resolve_imports(backbone_section.kwargs))
    if backbone_section.weights:
        load_weights(backbone, folder / backbone_section.weights, what="the backbone")
    head = build_head(head_section.layers, head_section.activation)
    _check_embedding_width(backbone, head_section.layers[0], backbone_section.pool, path)
    if head_section.weights:
        load_head_weights(head, folder / head_section.weights)
    return ProbeClassifier(backbone, head, backbone_section.pool), recipe.model_card()


def resolve_imports(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Replace each ``{"import": "module.name"}`` value by the object it names.

    Check the names first (``Recipe.code_request``): importing runs the module's code.
    """
    resolved = {}
    for key, value in kwargs.items():
        if _is_import(value):
            module, _, name = str(value["import"]).rpartition(".")
            try:
                value = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError, ValueError) as err:
                raise ValueError(f"construction argument {key!r}: cannot import {value}") from err
        resolved[key] = value
    return resolved


def _is_import(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"import"}


def _backbone_spec(value: object, field: str, source: str) -> str:
    spec = text_field(value, field, source)
    if not is_timm_spec(spec) and not is_function_spec(spec):
        raise ValueError(
            f"{source}: {field!r} must be 'timm:NAME', 'module:function' or "
            f"'file.py:function', not {spec!r:.80}"
        )
    return spec


def _layers(value: object, field: str, source: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) < 2
        or not all(isinstance(w, int) and not isinstance(w, bool) for w in value)
        or not all(1 <= w <= MAX_WIDTH for w in value)
    ):
        raise ValueError(
            f"{source}: {field!r} must list the embedding width, then each layer's width "
            f"(integers from 1 to {MAX_WIDTH}), e.g. [1024, 2]"
        )
    return tuple(value)


def _card(value: object, field: str, source: str) -> ModelCard | str:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{source}: {field!r} must be an object or a card file's path")
    return ModelCard.from_dict(value, source=source, prefix=field + ".")


@dataclass(frozen=True)
class BackboneSection:
    """A recipe's ``backbone``: its ``spec``, ``kwargs``, ``weights`` and ``pool`` (see above)."""

    spec: str = json_field(_backbone_spec, hint=" (e.g. 'timm:NAME')")
    kwargs: dict[str, Any] = json_field(object_field, {})
    weights: str | None = json_field(text_field, None)
    pool: str | None = json_field(choice_field(POOLS), None)


@dataclass(frozen=True)
class HeadSection:
    """A recipe's ``head``: the widths of its linear layers, embedding width first."""

    layers: tuple[int, ...] = json_field(_layers)
    activation: str = json_field(choice_field(tuple(ACTIVATIONS)), "gelu")
    weights: str | None = json_field(text_field, None)


@dataclass(frozen=True)
class Recipe:
    """The recipe in the file ``path``: ``backbone``, ``head`` and ``card`` (or its file)."""

    path: Path
    backbone: BackboneSection = json_field(section(BackboneSection))
    head: HeadSection = json_field(section(HeadSection))
    card: ModelCard | str | None = json_field(_card, None)

    @classmethod
    def read(cls, path: Path) -> Recipe:
        """Read and check a recipe file.

        A ValueError names the first missing, unknown or ill-typed field.
        """
        data = read_json_object(path, "model recipe")
        if not {"backbone", "head"} <= set(data):
            raise ValueError(
                f"{path} is not a model recipe: it needs 'backbone' and 'head' sections (and "
                "optionally 'card'); a model card alone is given with card=/--card"
            )
        return read_record(cls, data, f"model recipe {path}", path=path)

    def resolved_spec(self) -> str:
        """The backbone spec, with a ``file.py`` read from the recipe's folder."""
        return function_spec_in_folder(self.backbone.spec, self.path.parent)

    def code_request(self) -> CodeTrustRequest:
        """The code this recipe names outside what ships with the plugin, to check first.

        Raises FileNotFoundError when the backbone's ``file.py`` does not exist, ValueError when
        an ``{"import": ...}`` does not hold a string.
        """
        source = f"model recipe {self.path}"
        references = []
        if not is_timm_spec(self.backbone.spec):
            folder = self.path.parent
            references.append(factory_reference("backbone.spec", self.backbone.spec, folder))
        for key, value in self.backbone.kwargs.items():
            if _is_import(value):
                field = f"backbone.kwargs.{key}.import"
                references.append(
                    import_reference(field, text_field(value["import"], field, source))
                )
        found = tuple(ref for ref in references if ref is not None)
        return CodeTrustRequest(self.path, file_sha256(self.path), found)

    def model_card(self) -> ModelCard:
        """The recipe's card: inline, read from the file it names, or one named after it."""
        if self.card is None:
            return ModelCard(name=self.path.stem)
        if isinstance(self.card, str):
            return ModelCard.from_json(self.path.parent / self.card)
        return self.card


def _check_embedding_width(backbone: nn.Module, width: int, pool: str | None, path: Path) -> None:
    """Refuse a head whose input width is not the backbone's embedding width."""
    declared = getattr(backbone, "num_features", None)
    if isinstance(declared, int) and pool == "token+avg":
        declared *= 2
    if isinstance(declared, int) and declared != int(width):
        raise ValueError(
            f"model recipe {path}: the backbone gives {declared}-d embeddings, but the head's "
            f"first layer takes {width}; set head.layers[0] to {declared}"
        )
