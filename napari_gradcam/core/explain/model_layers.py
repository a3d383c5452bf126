"""Which layer, what layout, what stride: a model's layers behind one interface, ``ModelLayers``.

Token facts (patch size, prefix tokens, grid, head) are read from timm's, open_clip's and
Hugging Face's attribute names, on whichever module declares them (wrappers are walked; for a
layer, the nearest declaring ancestor counts: ``vit_facts``).

A layer's layout is decided from those facts, the input size and the output's shape, never
guessed; an output that fits no layout, or two, is refused with a message naming the layer,
its shape and what to do. 4-D outputs: inside a transformer the grid must be the patch grid
halved ``j >= 0`` times (stride = patch size * 2 ** j), channels first or last; in a
convolutional network (N, C, h, w) unless only channels-last gives a map of the input (a
``LayerNorm`` or ``Linear`` over the last axis breaks a tie). 3-D outputs (N, T, C) need a
declared patch size: ``T = prefix + h * w``, or ``h' * w'`` on a halved grid.

Candidates: modules that run once per forward with a determined layout on more than one cell
(one dry run on zeros). The default layer: a convolutional network's last candidate; a
transformer's last layer whose patch tokens reach the output (one forward and backward on a
seeded random input), i.e. the last block or its norm for a pooled head, the last block's
``norm1`` for a class-token head.

``ModelLayers`` caches the dry-run answers, keyed on the model's fingerprint (modules,
parameters' names, shapes, dtypes and devices, token facts, training flag), so a model edited
in place gets fresh answers; a ``LoadedModel`` keeps one, a bare module gets one per call.
"""

from __future__ import annotations

import difflib
import math
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from napari_gradcam.core.explain.batching import run_model
from napari_gradcam.core.explain.hooks import (
    capture_layer,
    captured_activation,
    ensure_hookable,
    forward_hooks,
    frozen_model,
    model_device,
    model_dtype,
    model_lock,
)
from napari_gradcam.core.explain.layout import Kind, Layout
from napari_gradcam.core.explain.targets import output_tensor

Shape = tuple[int, ...]
Head = Literal["token", "pooled", "unknown"]
Answer = TypeVar("Answer")
INPUT_LAYER = "input"
"""``Explanation.layer`` of the methods that use no layer (guided backprop, occlusion)."""
DEFAULT_PROBE_SHAPE = (1, 3, 224, 224)
"""Dry-run input without a card that gives one."""
MAX_HALVINGS = 5
"""Hierarchical stages looked for below the patch grid (Swin has 3)."""
REACH_SEED = 0
"""Seed of the random input that checks which layers' patch tokens reach the output."""
_TOKEN_POOLS = ("token",)
_AVERAGE_POOLS = ("avg", "avgmax", "max", "map", "avgmaxc")
_HF_TOKEN_PARAMETERS = ("cls_token", "distillation_token", "register_tokens")
_HF_CLASS_EMBEDDING = "class_embedding"
"""CLIP's class token: one (C,) vector prepended to the patch tokens."""
_OPEN_CLIP_VIT_PARTS = ("conv1", "class_embedding", "positional_embedding", "transformer")
"""What marks open_clip's ``VisionTransformer`` (one class token before the patch tokens)."""
_OPEN_CLIP_HEADS: dict[str, Head] = {"tok": "token", "avg": "pooled"}
_DO = "choose a layer with a spatial map (a convolution, a transformer block or its norm1)"
DENSE_SUGGESTIONS = 6
"""Feature maps a dense model's refused default names as examples."""


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


def vit_facts(model: object, layer: str | None = None) -> TokenFacts | None:
    """The token facts declared in ``model`` (for ``layer``: by its nearest declaring ancestor).

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier, or any module containing a transformer (wrappers are walked).
    layer : str, optional
        A module name; the facts of the innermost declaring module that contains it. Without
        it, the outermost declaring module's facts.

    Returns
    -------
    TokenFacts or None
        ``None`` when no module declares a patch size (e.g. a convolutional network).
    """
    return facts_for(declared_facts(getattr(model, "module", model)), layer)


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
    if hasattr(module, "patch_size") and all(hasattr(module, p) for p in _OPEN_CLIP_VIT_PARTS):
        return _open_clip_facts(module, name)
    config = getattr(module, "config", None)
    if config is not None and getattr(config, "patch_size", None) is not None:
        return _hugging_face_facts(module, config, name)
    return None


def _size_pair(value: object) -> tuple[int, int]:
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
        patch_size=_size_pair(patch_embed.patch_size),
        prefix_tokens=None if prefix is None else int(prefix),
        pad=bool(getattr(patch_embed, "dynamic_img_pad", False)),
        channels_last=str(getattr(output_fmt, "value", output_fmt)) == "NHWC",
        head=head,
        module=name,
    )


def _open_clip_facts(module: nn.Module, name: str) -> TokenFacts:
    """open_clip's ``VisionTransformer``: one class token; its ``pool_type`` or attention pool.

    ``pool_type`` "tok" reads the class token, "avg" the mean patch token; an attentional
    pooler (CoCa) attends over every token, patch tokens included.
    """
    head = _OPEN_CLIP_HEADS.get(str(getattr(module, "pool_type", "")), "unknown")
    if getattr(module, "attn_pool", None) is not None:
        head = "pooled"
    return TokenFacts(
        patch_size=_size_pair(module.patch_size), prefix_tokens=1, head=head, module=name
    )


def _hugging_face_facts(module: nn.Module, config: object, name: str) -> TokenFacts:
    """Hugging Face: the patch size from the config, the prefix from the embedding tokens.

    CLIP's ``class_embedding`` is a (C,) vector: one token. The head is declared by the
    config's type: CLIP's vision tower reads its class token, SigLIP's attends over every patch
    token (its ``vision_use_head``).
    """
    prefix = None
    for embeddings_name, embeddings in module.named_modules():
        if embeddings_name.rpartition(".")[2] != "embeddings":
            continue
        tokens = [getattr(embeddings, key, None) for key in _HF_TOKEN_PARAMETERS]
        prefix = sum(int(t.shape[1]) for t in tokens if t is not None and t.ndim == 3)
        class_embedding = getattr(embeddings, _HF_CLASS_EMBEDDING, None)
        if isinstance(class_embedding, torch.Tensor) and class_embedding.ndim == 1:
            prefix += 1
        if getattr(embeddings, "register_tokens", None) is None:
            prefix += int(getattr(config, "num_register_tokens", 0) or 0)
        break
    return TokenFacts(
        patch_size=_size_pair(config.patch_size),
        prefix_tokens=prefix,
        head=_hugging_face_head(config),
        module=name,
    )


def _hugging_face_head(config: object) -> Head:
    model_type = getattr(config, "model_type", None)
    if model_type == "clip_vision_model":
        return "token"
    if model_type == "siglip_vision_model" and getattr(config, "vision_use_head", False):
        return "pooled"
    return "unknown"


def layer_layout(
    model: nn.Module,
    name: str,
    output: object,
    input_hw: tuple[int, int],
    batch_size: int | None = None,
    *,
    declared: dict[str, TokenFacts] | None = None,
) -> Layout:
    """Decide the layout of layer ``name``'s ``output`` for an input of ``input_hw`` pixels.

    Parameters
    ----------
    model : torch.nn.Module
        The model that contains the layer.
    input_hw : tuple of int
        (H, W) of the model's input.
    batch_size : int, optional
        N of the input; an output with another first axis is refused.
    declared : dict, optional
        ``declared_facts(model)``, when known (saves walking the model).

    Raises
    ------
    ValueError
        When the output is not a map this module can read without guessing; the message
        names the layer, its shape and what to do.
    """
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"layer {name!r} outputs a {type(output).__name__}, not a spatial map; {_DO}"
        )
    shape = tuple(output.shape)
    if batch_size is not None and shape and shape[0] != batch_size:
        raise ValueError(
            f"layer {name!r} outputs {shape}: its first axis is not the batch of {batch_size} "
            f"(e.g. attention windows); {_DO}"
        )
    facts = facts_for(declared_facts(model) if declared is None else declared, name)
    if output.ndim == 3:
        return _token_layout(name, shape, facts, input_hw)
    if output.ndim == 4:
        if facts is not None:
            return _patch_grid_layout(model.get_submodule(name), name, shape, facts, input_hw)
        return _convolutional_layout(model, name, shape, input_hw)
    raise ValueError(f"layer {name!r} outputs {shape}, not a spatial map; {_DO}")


def _stage_grids(facts: TokenFacts, input_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """The patch grid and its halvings (stages pad odd sizes up), largest first."""
    grids = [facts.grid(input_hw)]
    for _ in range(MAX_HALVINGS):
        h, w = grids[-1]
        if h * w <= 1:
            break
        grids.append((math.ceil(h / 2), math.ceil(w / 2)))
    return grids


def _stride(facts: TokenFacts, stage: int) -> tuple[float, float]:
    return (float(facts.patch_size[0] * 2**stage), float(facts.patch_size[1] * 2**stage))


def _token_layout(
    name: str, shape: tuple[int, ...], facts: TokenFacts | None, input_hw: tuple[int, int]
) -> Layout:
    if facts is None:
        raise ValueError(
            f"layer {name!r} outputs {shape}, tokens (N, T, C), but the model declares no patch "
            "size, so their grid is unknown; give the model timm's attributes "
            "(patch_embed.patch_size, num_prefix_tokens) or a Hugging Face config.patch_size, "
            f"or {_DO[0].lower()}{_DO[1:]}"
        )
    tokens, prefix = shape[1], facts.prefix_tokens
    for stage, grid in enumerate(_stage_grids(facts, input_hw)):
        extra = tokens - grid[0] * grid[1]
        expected = (prefix or 0) if stage == 0 else 0
        if extra == expected and (stage == 0 or not prefix):
            return Layout("tokens", grid, extra, _stride(facts, stage))
    grid = facts.grid(input_hw)
    declared = "an undeclared number of" if prefix is None else str(prefix)
    raise ValueError(
        f"layer {name!r} outputs {shape}: {tokens} tokens are not {declared} prefix tokens plus "
        f"the {grid[0]}x{grid[1]} patch grid of a {input_hw[0]}x{input_hw[1]} input (patch "
        f"size {facts.patch_size}), nor a halving of it; {_DO}"
    )


def _patch_grid_layout(
    module: nn.Module,
    name: str,
    shape: tuple[int, ...],
    facts: TokenFacts,
    input_hw: tuple[int, int],
) -> Layout:
    grids = _stage_grids(facts, input_hw)
    readings = {"nchw": (shape[2], shape[3]), "nhwc": (shape[1], shape[2])}
    fits = [
        Layout(kind, grid, 0, _stride(facts, grids.index(grid)))  # type: ignore[arg-type]
        for kind, grid in readings.items()
        if grid in grids
    ]
    if len(fits) == 2 and fits[0].grid == fits[1].grid and shape[1] == shape[3]:
        kind = _module_kind(module, shape[3])
        kind = kind or ("nhwc" if facts.channels_last else "nchw")
        fits = [fit for fit in fits if fit.kind == kind]
    if len(fits) == 1:
        return fits[0]
    why = "fits both (N, C, h, w) and (N, h, w, C)" if fits else "is on no patch grid"
    raise ValueError(
        f"layer {name!r} outputs {shape}, which {why}: the patch grid of a "
        f"{input_hw[0]}x{input_hw[1]} input is {grids[0][0]}x{grids[0][1]} (patch size "
        f"{facts.patch_size}); attention weights and windows are not maps; {_DO}"
    )


def _convolutional_layout(
    model: nn.Module, name: str, shape: tuple[int, ...], input_hw: tuple[int, int]
) -> Layout:
    first = _plausible((shape[2], shape[3]), input_hw)
    last = _plausible((shape[1], shape[2]), input_hw)
    if last and (not first or _module_kind(model.get_submodule(name), shape[3]) == "nhwc"):
        return Layout("nhwc", (shape[1], shape[2]))
    if first:
        return Layout("nchw", (shape[2], shape[3]))
    raise ValueError(
        f"layer {name!r} outputs {shape}, which is no spatial map of a {input_hw[0]}x"
        f"{input_hw[1]} input in (N, C, h, w) or (N, h, w, C) layout; {_DO}"
    )


def _plausible(grid: tuple[int, int], input_hw: tuple[int, int]) -> bool:
    """Whether ``grid`` can be a map of the input: both strides >= 1/2 and within 1.5x."""
    if grid[0] < 1 or grid[1] < 1 or grid[0] * grid[1] < 2:
        return False
    strides = (input_hw[0] / grid[0], input_hw[1] / grid[1])
    return min(strides) >= 0.5 and max(strides) <= 1.5 * min(strides)


def _module_kind(module: nn.Module, channels: int) -> Kind | None:
    """The layout ``module``'s type declares for an output with a last axis of ``channels``.

    2-D convolutions, batch norms and pools output (N, C, h, w); a ``LayerNorm`` over, or a
    ``Linear`` into, the last axis outputs channels-last; anything else declares nothing.
    """
    if isinstance(module, nn.LayerNorm):
        return "nhwc" if tuple(module.normalized_shape) == (channels,) else None
    if isinstance(module, nn.Linear):
        return "nhwc" if module.out_features == channels else None
    spatial = (nn.Conv2d, nn.modules.batchnorm._BatchNorm, nn.MaxPool2d, nn.AvgPool2d)
    return "nchw" if isinstance(module, spatial) else None


@dataclass(frozen=True)
class DryRun:
    """What one dry forward on zeros shows: the layers holding a map, and the model's output.

    Attributes
    ----------
    layouts : dict of str to Layout
        The candidate layers, in the order their outputs complete.
    channels : dict of str to int
        Each candidate's channel count.
    output_shape : tuple of int or None
        The shape of the model's output tensor (``targets.output_tensor``), ``None`` without
        one.
    """

    layouts: dict[str, Layout]
    channels: dict[str, int]
    output_shape: Shape | None


@dataclass(frozen=True)
class MapGeometry:
    """Where a method's map lies on an input of a given size.

    Attributes
    ----------
    layer : str
        The resolved target layer (``"input"`` for methods that use none).
    shape : tuple of int
        ``(h, w)`` of the map.
    stride : tuple of float
        ``(fy, fx)`` input pixels per map cell.
    """

    layer: str
    shape: tuple[int, int]
    stride: tuple[float, float]


def map_stride(
    layout: Layout | None, input_hw: tuple[int, int], map_hw: tuple[int, int]
) -> tuple[float, float]:
    """Input pixels per map cell, (fy, fx).

    Declared by the layer's layout (a transformer's patch size, times its stage's
    downsampling), exact for any input size; else inferred from the sizes (``infer_stride``).
    """
    if layout is not None and layout.stride is not None and tuple(map_hw) == layout.grid:
        return layout.stride
    return (infer_stride(input_hw[0], map_hw[0]), infer_stride(input_hw[1], map_hw[1]))


def infer_stride(input_size: int, map_size: int) -> float:
    """Input pixels per map cell along one axis.

    Networks that pool by an integer factor ``f`` give ``floor(n / f)`` or ``ceil(n / f)``
    cells; then ``f`` is exact. Otherwise the ratio ``n / m`` is returned.

    Examples
    --------
    >>> infer_stride(100, 12), infer_stride(224, 7), infer_stride(10, 4)
    (8.0, 32.0, 2.5)
    """
    factor = max(round(input_size / map_size), 1)
    if map_size in (input_size // factor, -(-input_size // factor)):
        return float(factor)
    return input_size / map_size


class ModelLayers:
    """One model's layers: resolution, candidates, layouts and token facts, with one cache.

    Parameters
    ----------
    module : torch.nn.Module
        The model; held weakly (its owner keeps it), never changed (dry runs restore its
        flags, see ``hooks``).

    Notes
    -----
    The cache holds the answers that take a dry run, keyed by question and input shape; it is
    emptied when the model's fingerprint changes (see the module docstring) or by ``clear``.
    """

    def __init__(self, module: nn.Module) -> None:
        self._module = weakref.ref(module)
        self._answers: dict[Hashable, Any] = {}
        self._fingerprint: tuple | None = None

    @property
    def module(self) -> nn.Module:
        """The model (raises ``ReferenceError`` once it is gone)."""
        module = self._module()
        if module is None:
            raise ReferenceError("the model of these layers no longer exists")
        return module

    def clear(self) -> None:
        """Forget every cached answer; the next question runs its dry run again."""
        with model_lock(self.module):
            self._answers.clear()
            self._fingerprint = None

    def cached(self, key: Hashable, compute: Callable[[], Answer]) -> Answer:
        """The answer to ``key`` for the model as it is now: cached, else ``compute()``.

        Other modules keep their own per-model answers here too (``gradient_pass``'s memory
        profile), so they are forgotten with the layers' when the model changes.
        """
        with model_lock(self.module):
            self.declared_facts()
            if key not in self._answers:
                self._answers[key] = compute()
            return self._answers[key]

    def declared_facts(self) -> dict[str, TokenFacts]:
        """``declared_facts`` of the model; empties the cache when the model has changed.

        Raises ``ValueError`` for a TorchScript model (``hooks.ensure_hookable``).
        """
        ensure_hookable(self.module)
        declared = declared_facts(self.module)
        fingerprint = (
            self.module.training,
            tuple((name, type(module)) for name, module in self.module.named_modules()),
            tuple(
                (name, tuple(param.shape), param.dtype, param.device)
                for name, param in self.module.named_parameters()
            ),
            tuple(declared.items()),
        )
        with model_lock(self.module):
            if fingerprint != self._fingerprint:
                self._answers.clear()
                self._fingerprint = fingerprint
        return declared

    def candidates(self, input_shape: Shape) -> dict[str, Layout]:
        """The layers holding a map, in the order their outputs complete, with their layouts.

        Found by one dry run on zeros of ``input_shape`` (N, C, H, W) under inference mode;
        modules called more than once per forward are left out.
        """
        return dict(self.dry_run(input_shape).layouts)

    def dry_run(self, input_shape: Shape) -> DryRun:
        """The candidates and the output shape of one dry run on zeros (see ``candidates``)."""
        shape = tuple(input_shape)
        return self.cached(("dry run", shape), lambda: self._dry_run(shape))

    def default(self, input_shape: Shape) -> str | None:
        """The layer explained when none is named (see the module docstring), ``None`` without."""
        shape = tuple(input_shape)
        return self.cached(("default", shape), lambda: self._choose_default(shape))

    def reaching(self, input_shape: Shape) -> list[str]:
        """The candidate layers whose map part gets a non-zero output gradient, in run order.

        For a transformer with a class-token head this leaves out the layers after the last
        attention (their patch tokens never reach the class token).
        """
        shape = tuple(input_shape)
        return list(self.cached(("reaching", shape), lambda: self._reaching_layers(shape)))

    def resolve(
        self,
        layer: str | nn.Module | None,
        *,
        default: str | None = None,
        input_shape: Shape = DEFAULT_PROBE_SHAPE,
    ) -> tuple[str, nn.Module]:
        """Find the target layer by name or module; ``None`` uses ``default`` or ``self.default``.

        Raises
        ------
        ValueError
            For an unknown name (listing the closest valid names), a module that is not part
            of the model, or a model without any spatial layer.
        """
        ensure_hookable(self.module)
        modules = dict(self.module.named_modules())
        if isinstance(layer, nn.Module):
            for name, module in modules.items():
                if module is layer and name:
                    return name, module
            raise ValueError("the given layer module is not a submodule of the model")
        if layer is None:
            layer = default or self._last_candidate(input_shape)
        if layer not in modules or layer == "":
            raise ValueError(_unknown_layer_message(layer, [name for name in modules if name]))
        return layer, modules[layer]

    def layout(self, name: str, input_shape: Shape) -> Layout:
        """The layout (map grid, declared stride) of layer ``name``'s output for ``input_shape``.

        One cached dry forward on zeros; decided as ``explain`` decides it, so a transformer's
        map gets its patch grid and patch stride.
        """
        shape = tuple(input_shape)
        return self.cached(("layout", name, shape), lambda: self._probe_layout(name, shape))

    def layout_check(self, name: str, batch: torch.Tensor) -> Callable[[object], Layout]:
        """``layout_of`` for ``capture_layer``: the layout on ``batch``, or ``ValueError``."""
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        declared = self.declared_facts()
        return lambda output: layer_layout(
            self.module, name, output, size, len(batch), declared=declared
        )

    def _probe_layout(self, name: str, input_shape: Shape) -> Layout:
        module = self.module
        zeros = self._input(input_shape, zeros=True)
        layer = module.get_submodule(name)
        check = self.layout_check(name, zeros)
        with (
            frozen_model(module),
            torch.inference_mode(),
            capture_layer(layer, name, check, with_grad=False) as captured,
        ):
            run_model(module, zeros, output_tensor)
        captured_activation(captured, name)
        return captured.layout

    def _dry_run(self, input_shape: Shape) -> DryRun:
        """Candidates (modules run once, holding a map on more than one cell), output shape."""
        model = self.module
        declared = self.declared_facts()
        found: dict[str, Layout] = {}
        channels: dict[str, int] = {}
        calls: dict[str, int] = {}

        def make_hook(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
                calls[name] = calls.get(name, 0) + 1
                try:
                    layout = layer_layout(
                        model, name, output, input_shape[-2:], input_shape[0], declared=declared
                    )
                except ValueError:
                    return
                if layout.grid[0] * layout.grid[1] > 1:
                    found[name] = layout
                    channels[name] = int(layout.to_nchw(output).shape[1])

            return hook

        with forward_hooks(model, make_hook), frozen_model(model), torch.inference_mode():
            output = model(self._input(input_shape, zeros=True))
        once = {name: layout for name, layout in found.items() if calls[name] == 1}
        shape = _output_shape(output)
        return DryRun(once, {name: channels[name] for name in once}, shape)

    def _input(self, shape: Shape, zeros: bool = False) -> torch.Tensor:
        device, dtype = model_device(self.module), model_dtype(self.module)
        if zeros:
            return torch.zeros(shape, device=device, dtype=dtype)
        generator = torch.Generator().manual_seed(REACH_SEED)
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    def _choose_default(self, input_shape: Shape) -> str | None:
        run = self.dry_run(input_shape)
        layouts = run.layouts
        if run.output_shape is not None and len(run.output_shape) == 4:
            raise ValueError(_dense_default_message(run))
        if not layouts:
            return None
        facts = facts_for(self.declared_facts(), None)
        if facts is None:
            return list(layouts)[-1]
        reaching = self.reaching(input_shape)
        if not reaching:
            return None
        modules = dict(self.module.named_modules())
        norms = [name for name in reaching if isinstance(modules[name], nn.LayerNorm)]
        if facts.head != "pooled" and norms:
            return norms[-1]
        return reaching[-1]

    def _reaching_layers(self, input_shape: Shape) -> list[str]:
        """The candidates whose map part (prefix tokens dropped) gets a non-zero gradient."""
        layouts = self.candidates(input_shape)
        if not layouts:
            return []
        model = self.module
        outputs: dict[str, torch.Tensor] = {}

        def make_hook(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
                if output.requires_grad:
                    output.retain_grad()
                    outputs[name] = output

            return hook

        with (
            forward_hooks(model, make_hook, set(layouts)),
            frozen_model(model),
            torch.inference_mode(False),
            torch.enable_grad(),
        ):
            scores = output_tensor(model(self._input(input_shape).requires_grad_(True)))
            top = scores.max(dim=1).values if scores.ndim > 1 else scores
            top.sum().backward()
        reached = {
            name
            for name, output in outputs.items()
            if output.grad is not None and bool(layouts[name].to_nchw(output.grad).abs().amax() > 0)
        }
        return [name for name in layouts if name in reached]

    def _last_candidate(self, input_shape: Shape) -> str:
        name = self.default(input_shape)
        if name is None:
            raise ValueError(
                "the model has no layer with a spatial map to explain ((N, C, h, w), "
                "channels-last, or transformer tokens whose grid the model declares, reaching "
                "the output); name a layer, or use method='occlusion'"
            )
        return name


def _output_shape(output: object) -> Shape | None:
    """The shape of the tensor a model returns (``output_tensor``), ``None`` without one."""
    try:
        return tuple(output_tensor(output).shape)
    except ValueError:
        return None


def _dense_default_message(run: DryRun) -> str:
    """Why a model whose output is a map gets no default layer, with feature maps to name."""
    classes = run.output_shape[1]
    features = [name for name, count in run.channels.items() if count != classes]
    return (
        f"the model returns a map {run.output_shape}, a dense (e.g. segmentation) output, so "
        "its last layer with a map is the output itself: no layer is chosen for it. Name one "
        "(layer= / --layer, or the card's 'default_layer'), e.g. the input of its output head; "
        f"feature maps before the head: {', '.join(features[-DENSE_SUGGESTIONS:]) or 'none'}"
    )


def _unknown_layer_message(layer: str, names: list[str]) -> str:
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    hint = (
        f"closest: {', '.join(close)}" if close else f"valid names include: {', '.join(names[-8:])}"
    )
    return f"the model has no layer named {layer!r}; {hint}"


_BARE_MODULE_LAYERS: weakref.WeakKeyDictionary[nn.Module, ModelLayers] = weakref.WeakKeyDictionary()
"""The ``ModelLayers`` of modules explained without a ``LoadedModel``: gone with the module,
emptied when it is edited in place, like a loaded model's own."""


def model_layers(model: object) -> ModelLayers:
    """The ``ModelLayers`` of a ``LoadedModel`` (its own cache), or of a bare module.

    A bare module keeps one for as long as it lives, so a second ``explain`` of the same model
    runs no dry forward to find its layer again.
    """
    layers = getattr(model, "layers", None)
    if isinstance(layers, ModelLayers):
        return layers
    module = getattr(model, "module", model)
    with model_lock(module):
        if module not in _BARE_MODULE_LAYERS:
            _BARE_MODULE_LAYERS[module] = ModelLayers(module)
        return _BARE_MODULE_LAYERS[module]


def candidate_layers(model: object, input_shape: Shape | None = None) -> list[str]:
    """Names of the modules whose output holds a map, in the order their outputs complete.

    A map is an output with a determined layout (``layer_layout``) on more than one cell (see
    ``ModelLayers.candidates``); ``candidate_layouts`` gives the layouts too.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier (a ``LoadedModel`` gives its card's input size).
    input_shape : tuple of int, optional
        (N, C, H, W) of the dry-run input; default from the card, else (1, 3, 224, 224).
    """
    return list(candidate_layouts(model, input_shape))


def candidate_layouts(model: object, input_shape: Shape | None = None) -> dict[str, Layout]:
    """``candidate_layers`` with each layer's layout, e.g. for labels such as "tokens 14x14"."""
    return model_layers(model).candidates(_probe_shape(model, input_shape))


def default_layer(model: object, input_shape: Shape | None = None) -> str | None:
    """The layer explained when none is named, ``None`` without a map.

    The card's ``default_layer`` when a ``LoadedModel`` has one; else the last map of a
    convolutional network, or for a transformer the last layer whose patch tokens reach the
    output (for a class-token head, the input of the last block's attention).
    """
    card = getattr(model, "card", None)
    if card is not None and card.default_layer:
        return card.default_layer
    return model_layers(model).default(_probe_shape(model, input_shape))


def resolve_layer(
    model: object,
    layer: str | nn.Module | None,
    *,
    default: str | None = None,
    input_shape: Shape = DEFAULT_PROBE_SHAPE,
) -> tuple[str, nn.Module]:
    """Find the target layer by name or module (``ModelLayers.resolve`` of ``model_layers``)."""
    return model_layers(model).resolve(layer, default=default, input_shape=input_shape)


def _probe_shape(model: object, input_shape: Shape | None) -> Shape:
    if input_shape is not None:
        return tuple(input_shape)
    card = getattr(model, "card", None)
    return card.probe_shape if card else DEFAULT_PROBE_SHAPE
