"""``CamMethod``: one map method as an object, with what it can do and the options it takes.

What a method needs decides what ``explain()`` captures and what it checks before running:

- ``activations``: the target layer's output (a hookable model and a spatial layer).
- ``gradients``: also d(score)/d(activations), by the fast path (graph from the layer only).
- ``forwards``: many batched inference forwards (memory budget, progress and cancel apply).
- ``guided``: input gradients through guided ``nn.ReLU`` modules (a full backward pass).
- ``attention``: every transformer block's attention, read from q and k during the forward by
  the method's ``reader``; with ``gradients``, also d(score)/d(attention) (a backward pass
  through the blocks).
- ``block scores``: with ``attention``, each chosen block's own score (its tokens through the
  model's declared final norm, pooling and head, ``score_projection``) and d(block score)/dA
  of that block (LeGrad).

A method without ``activations`` uses no layer; with neither ``activations`` nor ``guided``
(occlusion) it needs no hooks at all and works with TorchScript models. No torch here: the
method modules import it inside their functions, so the dock lists them at napari's start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from napari_gradcam.core.explain.method_options import NoOptions

if TYPE_CHECKING:
    from torch import Tensor

    from napari_gradcam.core.explain.context import LayerContext

Need = Literal["activations", "gradients", "forwards", "guided", "attention", "block scores"]
GRADIENT: frozenset[Need] = frozenset({"activations", "gradients"})
"""What the gradient-weighted methods need."""


@dataclass(frozen=True)
class CamMethod:
    """A class-activation-map method.

    Attributes
    ----------
    name : str
        Registry key (``method=`` in ``explain``).
    reference : str
        The paper that defines it.
    needs : frozenset of str
        What the capture must provide and what the method runs (see the module docstring).
    compute : callable
        ``(LayerContext) -> cam`` (N, h, w), >= 0.
    options : type
        Its options dataclass (``NoOptions`` when it takes none); ``options()`` the defaults.
    bfloat16 : bool
        Whether its masked forwards can run on a bfloat16 copy of the model.
    map_stride : callable, optional
        ``(LayerContext) -> (fy, fx)`` when the stride cannot be inferred from the map's
        shape (occlusion's grid, transformer patches).
    reader : type, optional
        Of the attention methods: ``reader(model, batch, options)`` takes the blocks'
        attention during the capture forward (and may refuse the model).
    """

    name: str
    title: str
    reference: str
    needs: frozenset[Need]
    compute: Callable[[LayerContext], Tensor]
    options: type = NoOptions
    bfloat16: bool = False
    map_stride: Callable[[LayerContext], tuple[float, float]] | None = None
    reader: Callable[..., Any] | None = None

    @property
    def uses_layer(self) -> bool:
        """Whether the method works on a target layer's activations."""
        return "activations" in self.needs

    @property
    def needs_hooks(self) -> bool:
        """Whether the method hooks modules (not possible in TorchScript models)."""
        return self.uses_layer or bool({"guided", "attention"} & self.needs)

    def stride(self, context: LayerContext) -> tuple[float, float] | None:
        """The map's stride when the method defines it, else ``None`` (inferred)."""
        return None if self.map_stride is None else self.map_stride(context)
