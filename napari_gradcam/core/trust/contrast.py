"""Compare maps: one class against another, and several methods or classes side by side.

A class contrast subtracts the map of class ``b`` from the map of class ``a`` (same method,
layer and input), so the sign says which class a region speaks for: positive for ``a``,
negative for ``b``. Raw maps of one layer share their units (gradients of logits), so the
difference is taken before any normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.settings import ExplainSettings


@dataclass(frozen=True)
class ClassContrast:
    """The signed difference of two classes' maps.

    Attributes
    ----------
    difference : numpy.ndarray
        float32 (h, w): ``first.cam - second.cam``; positive where the map favours ``first``.
    first, second : Explanation
        The maps of class ``a`` and class ``b``.
    """

    difference: np.ndarray
    first: Explanation
    second: Explanation

    @property
    def name(self) -> str:
        """``"a - b"`` with the class names."""
        return f"{self.first.target_names[0]} - {self.second.target_names[0]}"

    @property
    def limit(self) -> float:
        """Largest magnitude of the difference (1 for an all-zero one): symmetric colour limits."""
        peak = float(np.abs(self.difference).max())
        return peak if peak > 0 else 1.0


def class_contrast(
    model: object,
    image: np.ndarray | torch.Tensor,
    first: int | str | None,
    second: int | str,
    *,
    settings: ExplainSettings | None = None,
    card: ModelCard | None = None,
    origin: Sequence[float] = (0.0, 0.0),
) -> ClassContrast:
    """Return the map of class ``first`` minus the map of class ``second``.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier.
    image : numpy.ndarray or torch.Tensor
        Pixels (H, W[, C]) or one preprocessed image (1, C, H, W).
    first, second : int or str
        The two classes (index or name); they must differ. ``first=None``: the predicted one.
    settings : ExplainSettings, optional
        Method, layer and the method's options (its target is replaced by each class);
        default: Grad-CAM. A class-agnostic method (Eigen-CAM) gives zero everywhere.
    origin : sequence of float
        (y, x) of the image's top-left pixel, recorded for placement.
    """
    settings = settings or ExplainSettings()
    a, b = (
        explain(model, image, settings.replace(target=t), card=card, origin=origin)
        for t in (first, second)
    )
    if int(a.targets[0]) == int(b.targets[0]):
        raise ValueError(f"both classes are {a.target_names[0]!r}; choose two different classes")
    difference = np.asarray(a.cam, np.float32) - np.asarray(b.cam, np.float32)
    return ClassContrast(difference.reshape(difference.shape[-2:]), a, b)


def explanations_for(
    model: object,
    image: np.ndarray | torch.Tensor,
    methods: Sequence[str],
    targets: Sequence[int | str | None],
    *,
    layer: str | None = None,
    card: ModelCard | None = None,
    origin: Sequence[float] = (0.0, 0.0),
) -> Iterator[Explanation]:
    """Explain every (method, class) pair of the same input, one at a time, methods outer.

    Each ``Explanation`` keeps its own stride (methods at input resolution differ from
    layer methods), so each can be placed on the image on its own.
    """
    for method in methods:
        for target in targets:
            yield explain(
                model, image, method=method, layer=layer, target=target, card=card, origin=origin
            )
