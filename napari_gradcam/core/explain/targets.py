"""Which class to explain, with its score and probability (multi-class or single-logit)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from napari_gradcam.core.card import ModelCard

Target = int | str | None | Sequence[int | str]
"""A class to explain (index or name), one per image, or ``None`` for the top class."""


def as_logits(output: object) -> torch.Tensor:
    """Return the model's output as logits (N, K); a single-logit model gives (N, 1).

    A tuple or list gives its first tensor; an output with a ``logits`` tensor (Hugging Face's
    ``ImageClassifierOutput``) gives that.
    """
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        output = output.logits
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"the model returned {type(output).__name__}, not a tensor of class scores; "
            "wrap it so that forward() returns logits (N, classes)"
        )
    if output.ndim == 1:
        output = output[:, None]
    if output.ndim != 2:
        raise ValueError(
            f"the model returned shape {tuple(output.shape)}; expected logits (N, classes). "
            "A segmentation model needs its output pooled to one score per class"
        )
    return output


def n_classes(logits: torch.Tensor) -> int:
    """Number of explainable classes: 2 for a single-logit (sigmoid) model."""
    return 2 if logits.shape[1] == 1 else logits.shape[1]


def resolve_targets(logits: torch.Tensor, target: Target, card: ModelCard) -> torch.Tensor:
    """Return the class index per image (N,) as int64 on the logits' device.

    ``None`` picks the top class (for a single logit: 1 when the logit is positive). An int or a
    class name applies to every image; a sequence gives one per image.
    """
    batch = logits.shape[0]
    if target is None:
        top = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)
        return top.detach()
    if isinstance(target, (int, str)):
        indices = [card.class_index(target)] * batch
    else:
        check_target_count(target, batch)
        indices = [card.class_index(t) for t in target]
    limit = n_classes(logits)
    bad = [i for i in indices if not 0 <= i < limit]
    if bad:
        raise ValueError(
            f"target class {bad[0]} is out of range: the model has {limit} classes "
            f"(0 to {limit - 1})"
        )
    return torch.tensor(indices, dtype=torch.long, device=logits.device)


def check_target_count(target: Target, images: int) -> None:
    """Refuse a sequence of targets that does not give one per image (``ValueError``)."""
    if isinstance(target, Sequence) and not isinstance(target, str) and len(target) != images:
        raise ValueError(f"{len(target)} targets given for a batch of {images} images")


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (score, probability) of each image's target class.

    For a single-logit model, class 1 is the logit and class 0 its negation, so that the
    probability is the sigmoid of the score in both cases.
    """
    if logits.shape[1] == 1:
        sign = targets.to(logits.dtype) * 2 - 1
        scores = logits[:, 0] * sign
        return scores, torch.sigmoid(scores)
    scores = logits.gather(1, targets[:, None])[:, 0]
    probabilities = torch.softmax(logits.detach(), dim=1).gather(1, targets[:, None])[:, 0]
    return scores, probabilities


def embed_region(model: object, pixels: object, card: ModelCard | None = None) -> object:
    """STAND-IN (main's core replaces it): the image embedding of ``pixels`` (H, W, C)."""
    from napari_gradcam.core.explain.preprocess import to_batch
    from napari_gradcam.core.targets import LikeEmbedding

    module = getattr(model, "module", model)
    card = card or getattr(model, "card", None) or ModelCard()
    with torch.inference_mode():
        out = module(to_batch(pixels, card, next(module.parameters()).device))
    return LikeEmbedding(tuple(float(v) for v in out.flatten()))
