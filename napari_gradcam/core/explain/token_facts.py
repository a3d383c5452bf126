"""What a vision transformer declares about its tokens: patch size, prefix tokens, grid.

Read from the attribute names of timm (``num_prefix_tokens``, ``patch_embed.patch_size``,
``dynamic_img_size``, ``patch_embed.dynamic_img_pad``, ``global_pool``, ``output_fmt``) and of
Hugging Face transformers (``config.patch_size``, ``config.num_register_tokens``, the
``embeddings``' ``cls_token`` / ``distillation_token`` / ``register_tokens``). Wrappers (a
linear probe on ``model.backbone``, ``model.encoder``...) are walked: the module that declares
the facts may sit anywhere in the model; for a layer, the nearest declaring ancestor counts.

The small public API, also used by the attention methods::

    facts = vit_facts(model)            # or vit_facts(model, "backbone.blocks.11.norm1")
    facts.prefix_tokens                 # class + distillation + register tokens (None: unknown)
    facts.grid((224, 160))              # patch grid (h, w) for an input of that size
    facts.patch_size                    # (py, px) input pixels per patch
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import nn

Head = Literal["token", "pooled", "unknown"]
_TOKEN_POOLS = ("token",)
_AVERAGE_POOLS = ("avg", "avgmax", "max", "map", "avgmaxc")
_HF_TOKEN_PARAMETERS = ("cls_token", "distillation_token", "register_tokens")


@dataclass(frozen=True)
class TokenFacts:
    """A transformer's declared token geometry.

    Attributes
    ----------
    patch_size : tuple of int
        (py, px): input pixels per patch token.
    prefix_tokens : int or None
        Tokens before the patch tokens (class, distillation, registers); ``None`` when the
        model does not say (then only outputs without prefix tokens are read as maps).
    pad : bool
        Whether a partial patch at the bottom/right edge is padded into a token (timm's
        ``dynamic_img_pad``): the grid rounds up instead of down.
    channels_last : bool
        Whether the model declares (N, h, w, C) feature maps (timm's ``output_fmt``, Swin).
    head : {"token", "pooled", "unknown"}
        What the classifier reads: the class token, or a pool over the patch tokens.
    module : str
        Name of the declaring module ("" for the model itself).
    """

    patch_size: tuple[int, int]
    prefix_tokens: int | None
    pad: bool = False
    channels_last: bool = False
    head: Head = "unknown"
    module: str = ""

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """Patch grid (h, w) of an input of ``input_hw`` = (H, W) pixels.

        Examples
        --------
        >>> TokenFacts((16, 16), 1).grid((224, 160))
        (14, 10)
        >>> TokenFacts((14, 14), 5, pad=True).grid((100, 98))
        (8, 7)
        """
        cells = math.ceil if self.pad else math.floor
        return (
            int(cells(input_hw[0] / self.patch_size[0])),
            int(cells(input_hw[1] / self.patch_size[1])),
        )


def vit_facts(model: nn.Module, layer: str | None = None) -> TokenFacts | None:
    """The token facts declared in ``model`` (for ``layer``: by its nearest declaring ancestor).

    Parameters
    ----------
    model : torch.nn.Module
        The classifier, or any module containing a transformer (wrappers are walked).
    layer : str, optional
        A module name; the facts of the innermost declaring module that contains it. Without
        it, the outermost declaring module's facts.

    Returns
    -------
    TokenFacts or None
        ``None`` when no module declares a patch size (e.g. a convolutional network).
    """
    return facts_for(declared_facts(model), layer)


def declared_facts(model: nn.Module) -> dict[str, TokenFacts]:
    """The facts of every module of ``model`` that declares a patch size, by module name.

    Hugging Face hands one ``config`` to a model and to many of its parts (embeddings,
    encoder); only the outermost module holding it declares, with the prefix tokens of the
    embeddings inside it.
    """
    found = {}
    configs: set[int] = set()
    for name, module in model.named_modules():
        config = getattr(module, "config", None)
        if config is not None and id(config) in configs:
            continue
        facts = _declared(module, name)
        if facts is not None:
            found[name] = facts
            if config is not None:
                configs.add(id(config))
    return found


def facts_for(declared: dict[str, TokenFacts], layer: str | None) -> TokenFacts | None:
    """From ``declared_facts``: the outermost, or the innermost one containing ``layer``."""
    if layer is None:
        return next(iter(declared.values()), None)
    containing = [facts for name, facts in declared.items() if _contains(name, layer)]
    return containing[-1] if containing else None


def _contains(ancestor: str, name: str) -> bool:
    return ancestor == "" or name == ancestor or name.startswith(f"{ancestor}.")


def _declared(module: nn.Module, name: str) -> TokenFacts | None:
    patch_embed = getattr(module, "patch_embed", None)
    if isinstance(patch_embed, nn.Module) and hasattr(patch_embed, "patch_size"):
        return _timm_facts(module, patch_embed, name)
    config = getattr(module, "config", None)
    if config is not None and getattr(config, "patch_size", None) is not None:
        return _hugging_face_facts(module, config, name)
    return None


def _pair(value: object) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    first, second = value  # type: ignore[misc]
    return (int(first), int(second))


def _timm_facts(module: nn.Module, patch_embed: nn.Module, name: str) -> TokenFacts:
    prefix = getattr(module, "num_prefix_tokens", None)
    pool = getattr(module, "global_pool", None)
    pool = getattr(pool, "pool_type", pool)  # a pooling module (Swin's head) names its type
    head: Head = (
        "token" if pool in _TOKEN_POOLS else "pooled" if pool in _AVERAGE_POOLS else "unknown"
    )
    output_fmt = getattr(module, "output_fmt", None)
    return TokenFacts(
        patch_size=_pair(patch_embed.patch_size),
        prefix_tokens=None if prefix is None else int(prefix),
        pad=bool(getattr(patch_embed, "dynamic_img_pad", False)),
        channels_last=str(getattr(output_fmt, "value", output_fmt)) == "NHWC",
        head=head,
        module=name,
    )


def _hugging_face_facts(module: nn.Module, config: object, name: str) -> TokenFacts:
    """Hugging Face: the patch size from the config, the prefix from the embedding tokens."""
    prefix = None
    for embeddings_name, embeddings in module.named_modules():
        if embeddings_name.rpartition(".")[2] != "embeddings":
            continue
        tokens = [getattr(embeddings, key, None) for key in _HF_TOKEN_PARAMETERS]
        prefix = sum(int(t.shape[1]) for t in tokens if t is not None and t.ndim == 3)
        if getattr(embeddings, "register_tokens", None) is None:
            prefix += int(getattr(config, "num_register_tokens", 0) or 0)
        break
    return TokenFacts(patch_size=_pair(config.patch_size), prefix_tokens=prefix, module=name)
