"""The pieces every check needs from ``(model, image)``: the module, its card and the batch."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.hooks import model_device, model_dtype
from napari_gradcam.core.explain.preprocess import check_tensor, to_batch


def model_parts(model: object, card: ModelCard | None = None) -> tuple[nn.Module, ModelCard]:
    """Return the module and the card of a ``LoadedModel`` or bare module.

    ``card`` overrides the model's own; a bare module without one gets the default card.
    """
    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected a torch.nn.Module or LoadedModel, got {type(model).__name__}")
    return module, card or getattr(model, "card", None) or ModelCard()


def model_batch(
    module: nn.Module, image: np.ndarray | torch.Tensor, card: ModelCard
) -> torch.Tensor:
    """Preprocess pixels (H, W[, C]) into (1, C, H, W) on the model's device and dtype.

    A tensor is taken as already preprocessed (N, C, H, W) and only checked and moved.
    """
    device, dtype = model_device(module), model_dtype(module)
    if isinstance(image, torch.Tensor):
        check_tensor(image)
        return image.detach().to(device=device, dtype=dtype)
    return to_batch(np.asarray(image), card, device).to(dtype)
