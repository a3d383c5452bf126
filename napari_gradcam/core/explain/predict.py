"""What the model predicts for pixels: class probabilities, the top class and its margin.

One function serves every face that only needs the model's answer, not a map: the annotation
dock's region probabilities and the per-tile numbers of a tiled explanation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.batching import run_model
from napari_gradcam.core.explain.finite import check_finite
from napari_gradcam.core.explain.hooks import frozen_model
from napari_gradcam.core.explain.inputs import model_batch, model_parts
from napari_gradcam.core.explain.targets import bind_target, class_probabilities
from napari_gradcam.core.targets import Target


@dataclass(frozen=True)
class Prediction:
    """The model's answer for a batch of images.

    Attributes
    ----------
    logits : numpy.ndarray
        (N, K) float32 raw outputs (K = 1 for a single-logit model); a dense output's mean
        logits inside the region; a similarity target's cosine (N, 1).
    targets : numpy.ndarray
        (N,) int64 class asked about (the top class when none was given).
    target_probability : numpy.ndarray
        (N,) float32 probability of the target (NaN for a similarity: see ``logits``).
    """

    logits: np.ndarray
    targets: np.ndarray
    target_probability: np.ndarray


def prediction_facts(logits: np.ndarray) -> dict[str, np.ndarray]:
    """Predicted class, its probability and its margin over the runner-up, per image.

    Examples
    --------
    >>> facts = prediction_facts(np.array([[0.0, np.log(3.0)]], np.float32))
    >>> int(facts["class_index"][0]), round(float(facts["margin"][0]), 3)
    (1, 0.5)
    """
    probabilities = class_probabilities(torch.from_numpy(np.asarray(logits)))
    top = torch.topk(probabilities, k=2, dim=1).values.cpu().numpy()
    return {
        "class_index": probabilities.argmax(dim=1).cpu().numpy().astype(np.int64),
        "probability": top[:, 0],
        "margin": top[:, 0] - top[:, 1],
    }


def predict(
    model: object,
    image: np.ndarray | torch.Tensor,
    *,
    target: Target = None,
    card: ModelCard | None = None,
) -> Prediction:
    """Classify pixels with one inference-mode forward (no hooks, no gradients).

    Runs inside ``frozen_model`` like every path of this package: under the model's lock, in
    eval mode, with its flags restored after.

    Parameters
    ----------
    model : torch.nn.Module or LoadedModel
        The classifier.
    image : numpy.ndarray or torch.Tensor
        Pixels (H, W[, C]) preprocessed with the card, or a preprocessed tensor (N, C, H, W).
    target : Target, optional
        What to score (a class, several, a contrast, a prompt, a region); ``None`` for the
        top class.
    card : ModelCard, optional
        Overrides the card of a ``LoadedModel``.

    Returns
    -------
    Prediction
        Logits, target classes and their probabilities.
    """
    module, card = model_parts(model, card)
    batch = model_batch(module, image, card)
    bound = bind_target(target, card, getattr(model, "text", None), batch.shape[-2:])
    with frozen_model(module), torch.inference_mode():
        scored = run_model(module, batch, bound.head)
        check_finite(scored, "the model's logits", module=module, card=card, batch=batch)
        weights = bound.weights(scored)
        probabilities = bound.probabilities(scored, weights)
    return Prediction(
        bound.summary_logits(scored, weights).float().cpu().numpy(),
        bound.indices(weights).cpu().numpy().astype(np.int64),
        probabilities.float().cpu().numpy(),
    )
