"""Class-activation-map methods, registered by name; one small module per family.

This package does not import torch at import time (the napari widget lists the methods without
paying torch's import time): each method names its implementation, imported on first use.

What a method needs decides what ``explain()`` captures and what it checks before running:

- ``activations``: the target layer's output (a hookable model and a spatial layer).
- ``gradients``: also d(score)/d(activations), by the fast path (graph from the layer only).
- ``forwards``: many batched inference forwards (memory budget, progress and cancel apply).
- ``guided``: input gradients through guided ``nn.ReLU`` modules (a full backward pass).
- ``attention``: every transformer block's attention, read from q and k during the forward by
  the method's ``reader``; with ``gradients``, also d(score)/d(attention) (a backward pass
  through the blocks).

A method without ``activations`` uses no layer; with neither ``activations`` nor ``guided``
(occlusion) it needs no hooks at all and works with TorchScript models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

    from napari_gradcam.core.explain.context import LayerContext, MethodSettings

Need = Literal["activations", "gradients", "forwards", "guided", "attention"]
BFLOAT16_METHODS = ("scorecam", "occlusion")
"""The methods whose masked forwards can run on a bfloat16 copy of the model."""
OPTION_METHODS = {"discard_ratio": ("rollout",), "attention_head": ("attention",)}
"""The methods that take each method option of ``explain`` (see ``method_options``)."""


@dataclass(frozen=True)
class CamMethod:
    """A class-activation-map method.

    Attributes
    ----------
    name : str
        Registry key (``method=`` in ``explain``).
    title : str
        Human-readable name.
    reference : str
        The paper that defines it.
    needs : frozenset of str
        What the capture must provide and what the method runs (see the module docstring).
    implementation : str
        ``"module:function"`` in this package: ``(LayerContext) -> cam`` (N, h, w), >= 0.
    map_stride : str, optional
        ``"module:function"``: ``(LayerContext) -> (fy, fx)`` when the stride cannot be
        inferred from the map's shape (occlusion's grid, transformer patches).
    reader : str, optional
        ``"module:Class"`` of the attention methods: ``(model, batch, MethodSettings)`` ->
        an ``AttentionReader`` that takes the blocks' attention during the capture forward.
    """

    name: str
    title: str
    reference: str
    needs: frozenset[Need]
    implementation: str
    map_stride: str | None = None
    reader: str | None = None

    @property
    def uses_layer(self) -> bool:
        """Whether the method works on a target layer's activations."""
        return "activations" in self.needs

    @property
    def runs_in_bfloat16(self) -> bool:
        """Whether ``bfloat16=True`` applies: its masked forwards can run in bfloat16."""
        return self.name in BFLOAT16_METHODS

    @property
    def options(self) -> tuple[str, ...]:
        """The method options of ``explain`` it takes (e.g. rollout's ``discard_ratio``)."""
        return tuple(key for key, names in OPTION_METHODS.items() if self.name in names)

    @property
    def needs_hooks(self) -> bool:
        """Whether the method hooks modules (not possible in TorchScript models)."""
        return self.uses_layer or bool({"guided", "attention"} & self.needs)

    def compute(self, context: LayerContext) -> Tensor:
        """Compute the raw map (N, h, w) from a context captured for this method."""
        return _load(self.implementation)(context)

    def stride(self, context: LayerContext) -> tuple[float, float] | None:
        """The map's stride when the method defines it, else ``None`` (inferred)."""
        return None if self.map_stride is None else _load(self.map_stride)(context)

    def attention_reader(self, model: Module, batch: Tensor, settings: MethodSettings) -> Any:
        """A new reader of the blocks' attention for this method and input (may refuse)."""
        return _load(self.reader)(model, batch, settings)


def _load(spec: str) -> Callable[..., Any]:
    """Import ``"module:function"`` of this package."""
    module, function = spec.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


_GRADIENT: frozenset[Need] = frozenset({"activations", "gradients"})
_TABLE: tuple[tuple[str, str, str, frozenset[Need], str], ...] = (
    ("gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017", _GRADIENT, "gradient:gradcam"),
    (
        "gradcam++",
        "Grad-CAM++",
        "Chattopadhyay et al., WACV 2018",
        _GRADIENT,
        "gradient:gradcam_plus_plus",
    ),
    ("xgradcam", "XGrad-CAM", "Fu et al., BMVC 2020", _GRADIENT, "gradient:xgradcam"),
    ("layercam", "LayerCAM", "Jiang et al., IEEE TIP 2021", _GRADIENT, "gradient:layercam"),
    ("hirescam", "HiResCAM", "Draelos & Carin, arXiv 2020", _GRADIENT, "gradient:hirescam"),
    (
        "scorecam",
        "Score-CAM",
        "Wang et al., CVPR workshops 2020",
        frozenset({"activations", "forwards"}),
        "score:scorecam",
    ),
    (
        "ablationcam",
        "Ablation-CAM",
        "Desai & Ramaswamy, WACV 2020",
        frozenset({"activations", "forwards"}),
        "ablation:ablationcam",
    ),
    (
        "eigencam",
        "Eigen-CAM",
        "Muhammad & Yeasin, IJCNN 2020",
        frozenset({"activations"}),
        "eigen:eigencam",
    ),
    (
        "guidedbackprop",
        "Guided backpropagation",
        "Springenberg et al., ICLR workshops 2015",
        frozenset({"guided"}),
        "guided:guided_backprop",
    ),
    (
        "guided-gradcam",
        "Guided Grad-CAM",
        "Selvaraju et al., ICCV 2017",
        _GRADIENT | {"guided"},
        "guided:guided_gradcam",
    ),
)

METHODS: dict[str, CamMethod] = {row[0]: CamMethod(*row) for row in _TABLE}
METHODS["occlusion"] = CamMethod(
    "occlusion",
    "Occlusion",
    "Zeiler & Fergus, ECCV 2014",
    frozenset({"forwards"}),
    "occlusion:occlusion",
    map_stride="occlusion:occlusion_stride",
)
_ATTENTION: tuple[tuple[str, str, str, frozenset[Need], str, str], ...] = (
    # name, title, reference, needs, function and reader class in attention.py
    (
        "rollout",
        "Attention rollout",
        "Abnar & Zuidema, ACL 2020",
        frozenset({"attention"}),
        "rollout",
        "RolloutReader",
    ),
    (
        "attention",
        "Class-token attention",
        "Caron et al. (DINO), ICCV 2021",
        frozenset({"attention"}),
        "last_block_attention",
        "LastBlockReader",
    ),
    (
        "transformer-attribution",
        "Transformer attribution",
        "Chefer, Gur & Wolf, ICCV 2021",
        frozenset({"attention", "gradients"}),
        "transformer_attribution",
        "RelevanceReader",
    ),
)
METHODS.update(
    {
        name: CamMethod(
            name,
            title,
            reference,
            needs,
            f"attention:{function}",
            map_stride="attention:patch_stride",
            reader=f"attention:{reader}",
        )
        for name, title, reference, needs, function, reader in _ATTENTION
    }
)


def get_method(name: str) -> CamMethod:
    """Return the method registered as ``name``, or raise with the valid names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}"
        ) from None


def check_precision(method: CamMethod, bfloat16: bool) -> None:
    """Refuse ``bfloat16`` for a method whose forwards cannot run in it, saying what to do."""
    if bfloat16 and not method.runs_in_bfloat16:
        raise ValueError(
            f"bfloat16 speeds up the masked forwards of {' and '.join(BFLOAT16_METHODS)} "
            f"only; {method.title} runs in the model's own precision: turn bfloat16 off"
        )
