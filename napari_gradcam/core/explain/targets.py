"""How a target scores a model's output: one number per image, whose gradient is explained.

A ``Target`` (``core.targets``) is bound to a model card (and a text tower for prompts) as a
``BoundTarget`` with two steps, so that every method, tiled run and trust check treats all
kinds alike:

- ``head(output)`` turns the model's raw output into the scored tensor ``S``: class logits
  (N, K), cosine similarities to a reference (N, 1), or dense logits (N, C, h, w);
- ``weights(S)`` gives ``W`` of the same shape, resolved once per image (one-hot for a class,
  several ones for ``Classes``, +1 and -alpha for a ``Contrast``, the region's area weights for
  an ``OutputRegion``), so the explained score is ``(S * W)`` summed per image
  (``target_scores``). Masked forwards reuse ``W`` for any subset of images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.augment import FLIPS
from napari_gradcam.core.targets import (
    SIMILARITY_KINDS,
    Classes,
    Contrast,
    LikeEmbedding,
    OutputRegion,
    Prompt,
    RecordedRegion,
    Target,
    describe_target,
)
from napari_gradcam.core.text_encoder import TextEncoder


def output_tensor(output: object) -> torch.Tensor:
    """The model's output tensor; anything else is refused.

    A tuple or list gives its first tensor, an output object its ``logits`` (Hugging Face).
    """
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        output = output.logits
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"the model returned {type(output).__name__}, not a tensor; wrap it so that "
            "forward() returns logits (N, classes), an embedding (N, D) or dense logits "
            "(N, C, h, w)"
        )
    return output


def as_logits(output: object) -> torch.Tensor:
    """Return the model's output as logits (N, K); a single-logit model gives (N, 1)."""
    output = output_tensor(output)
    if output.ndim == 1:
        output = output[:, None]
    if output.ndim != 2:
        hint = (
            "a segmentation model's card says output 'dense', and its target is an output "
            "region (OutputRegion)"
            if output.ndim == 4
            else "pool it to one score per class"
        )
        raise ValueError(
            f"the model returned shape {tuple(output.shape)}; expected logits (N, classes): {hint}"
        )
    return output


def n_classes(logits: torch.Tensor) -> int:
    """Number of explainable classes: 2 for a single-logit (sigmoid) model."""
    return 2 if logits.shape[1] == 1 else logits.shape[1]


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities (N, classes[, h, w]): softmax, or (1 - p, p) with ``p = sigmoid(logit)``."""
    scores = logits.detach().float()
    if scores.shape[1] == 1:
        positive = torch.sigmoid(scores)
        return torch.cat([1 - positive, positive], dim=1)
    return torch.softmax(scores, dim=1)


def target_scores(scored: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The explained score of each image: ``scored * weights`` summed per image (N,)."""
    return (scored * weights.to(scored.dtype)).flatten(1).sum(dim=1)


def check_target_count(target: Target, images: int) -> None:
    """Refuse a sequence of classes that does not give one per image (``ValueError``)."""
    if _per_image(target) and len(target) != images:
        raise ValueError(f"{len(target)} targets given for a batch of {images} images")


@dataclass(frozen=True)
class BoundTarget:
    """A target bound to a model card (and the text embedding of a prompt).

    Build it with :func:`bind_target`. ``head`` and ``weights`` are described in the module's
    docstring; ``names``, ``indices`` and ``probabilities`` say what was explained.
    """

    target: Target
    card: ModelCard
    reference: torch.Tensor | None = None
    """(D,) unit-length embedding of a prompt or reference (similarity targets)."""
    input_size: tuple[int, int] | None = None

    @property
    def dense(self) -> bool:
        """Whether the target is a region of a dense output."""
        return isinstance(self.target, OutputRegion)

    def head(self, output: object) -> torch.Tensor:
        """The scored tensor ``S`` of the model's raw output (see the module docstring)."""
        if self.reference is not None:
            embedding = output_tensor(output)
            if embedding.ndim != 2:
                raise ValueError(
                    f"the model returned shape {tuple(embedding.shape)}; a similarity target "
                    "needs one image embedding per image (N, D): pool the tokens in the model"
                )
            if embedding.shape[1] != self.reference.numel():
                raise ValueError(
                    f"the image embedding has {embedding.shape[1]} values and the "
                    f"{describe_target(self.target, self.card)} embedding "
                    f"{self.reference.numel()}: embed the reference with this same model"
                )
            unit = F.normalize(embedding, dim=1)
            return unit @ self.reference.to(unit.device, unit.dtype)[:, None]
        if self.dense:
            dense = output_tensor(output)
            if dense.ndim != 4:
                raise ValueError(
                    f"the model returned shape {tuple(dense.shape)}; an output region needs "
                    "dense logits (N, C, h, w)"
                )
            return dense
        return as_logits(output)

    def weights(self, scored: torch.Tensor, first: int = 0) -> torch.Tensor:
        """``W`` for the images ``first:first + len(scored)`` of the batch, from their ``S``.

        Resolved from the detached output (the top class, the nearest class), so ``W`` is a
        constant of the explanation.
        """
        scored = scored.detach()
        if self.reference is not None:
            return torch.ones_like(scored)
        if self.dense:
            return self._region_weights(scored, first)
        return self._class_weights(scored, first)

    def copies(self, weights: torch.Tensor, groups: int) -> torch.Tensor:
        """``W`` of a batch of ``groups`` flipped copies (``augment.FLIPS``) of the images."""
        return torch.cat([self.flipped(weights, group) for group in range(groups)])

    def flipped(self, weights: torch.Tensor, group: int) -> torch.Tensor:
        """``W`` of the images flipped by ``FLIPS[group]``: a region flips with its image."""
        dims = FLIPS[group]
        return weights.flip(dims) if self.dense and dims else weights

    def scores(self, scored: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The explained score per image (N,)."""
        return target_scores(scored, weights)

    def probabilities(self, scored: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Probability of what is explained (N,); NaN for a similarity.

        A class: its probability; several: the sum of theirs; a contrast: the main class's; an
        output region: the class's mean probability over the region's pixels.
        """
        if self.reference is not None:
            return torch.full((len(scored),), float("nan"), device=scored.device)
        probabilities = class_probabilities(scored)
        if self.dense:
            area = weights.abs().sum(dim=(1, 2, 3)).clamp_min(1e-12)
            chosen = _dense_class_weights(weights, probabilities.shape[1])
            return (probabilities * chosen).sum(dim=(1, 2, 3)) / area
        chosen = _probability_columns(weights, probabilities.shape[1])
        return (probabilities * chosen).sum(dim=1)

    def indices(self, weights: torch.Tensor) -> torch.Tensor:
        """The main class per image (N,) int64; 0 for a similarity."""
        if self.reference is not None:
            return torch.zeros(len(weights), dtype=torch.long, device=weights.device)
        if self.dense:
            weights = weights.flatten(2).sum(dim=2)
        if weights.shape[1] == 1:
            return (weights[:, 0] > 0).long()
        return weights.argmax(dim=1)

    def names(self, weights: torch.Tensor) -> tuple[str, ...]:
        """What was explained, per image (class names, or the target's description)."""
        target = self.target
        if isinstance(target, Contrast) and target.against is None and target.alpha > 0:
            main = describe_target(target.main, self.card)
            others = weights.argmin(dim=1).tolist()
            return tuple(f"{main} vs {self.card.class_name(o)}" for o in others)
        if target is None or isinstance(target, (int, str)) or _per_image(target):
            return tuple(self.card.class_name(int(i)) for i in self.indices(weights))
        return (describe_target(target, self.card),) * len(weights)

    def summary_logits(self, scored: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The output per class (N, K): ``S`` itself, or a dense output's mean in the region."""
        if not self.dense:
            return scored
        region = weights.abs().sum(dim=1, keepdim=True)
        inside = (scored * region).flatten(2).sum(dim=2)
        return inside / region.flatten(2).sum(dim=2).clamp_min(1e-12)

    def _class_weights(self, logits: torch.Tensor, first: int) -> torch.Tensor:
        target = self.target
        weights = torch.zeros_like(logits)
        single = logits.shape[1] == 1
        if isinstance(target, Classes):
            if single:
                raise ValueError(
                    "a single-logit model's two classes are each other's negation; their sum "
                    "explains nothing: explain one class"
                )
            weights[:, [self._index(c, logits) for c in target.classes]] = 1.0
            return weights
        if isinstance(target, Contrast):
            if single:
                raise ValueError(
                    "a single-logit model's classes are each other's negation, so a contrast "
                    "is the class itself: explain the class"
                )
            main = self._index(target.main, logits)
            if target.against is None:
                others = logits.clone()
                others[:, main] = -torch.inf
                against = others.argmax(dim=1)
            else:
                against = torch.full((len(logits),), self._index(target.against, logits))
            weights[:, main] = 1.0
            weights[torch.arange(len(logits)), against.to(logits.device)] = -float(target.alpha)
            return weights
        if target is None:
            top = (logits[:, 0] > 0).long() if single else logits.argmax(dim=1)
        else:
            wanted = list(target)[first : first + len(logits)] if _per_image(target) else None
            refs = wanted if wanted is not None else [target] * len(logits)
            indices = [self._index(r, logits) for r in refs]
            top = torch.tensor(indices, dtype=torch.long, device=logits.device)
        if single:
            weights[:, 0] = top.to(logits.dtype) * 2 - 1
        else:
            weights[torch.arange(len(logits)), top] = 1.0
        return weights

    def _region_weights(self, dense: torch.Tensor, first: int) -> torch.Tensor:
        target = self.target
        assert isinstance(target, OutputRegion)
        images, channels, height, width = dense.shape
        index = card_index(self.card, target.target_class, 2 if channels == 1 else channels)
        area = torch.ones((images, 1, height, width), dtype=dense.dtype, device=dense.device)
        if target.mask is not None:
            area = _mask_on_grid(target.mask, first, images, (height, width), self.input_size)
            area = area.to(dense.device, dense.dtype)
        weights = torch.zeros_like(dense)
        if channels == 1:
            weights[:, :1] = area * (1.0 if index == 1 else -1.0)
        else:
            weights[:, index : index + 1] = area
        return weights

    def _index(self, ref: int | str, logits: torch.Tensor) -> int:
        return card_index(self.card, ref, n_classes(logits))


def card_index(card: ModelCard, ref: int | str, limit: int) -> int:
    """The logit index of class ``ref`` (name or number), checked against ``limit`` classes."""
    index = card.class_index(ref)
    if not 0 <= index < limit:
        raise ValueError(
            f"target class {index} is out of range: the model has {limit} classes "
            f"(0 to {limit - 1})"
        )
    return index


def bind_target(
    target: Target,
    card: ModelCard,
    text: TextEncoder | None = None,
    input_size: Sequence[int] | None = None,
) -> BoundTarget:
    """Check that ``target`` fits the model its card describes, and bind it.

    Parameters
    ----------
    target : Target
        What to explain.
    card : ModelCard
        Says what the model's output is (``card.output``); never guessed from its shape.
    text : TextEncoder, optional
        The text tower of a vision-language model; needed for a ``Prompt``.
    input_size : sequence of int, optional
        (H, W) of the explained images, which an ``OutputRegion``'s mask must match.

    Raises
    ------
    ValueError
        When the target kind does not fit the model's output, a prompt has no text tower, or
        a recorded region has lost its mask; the message says what to do.
    """
    size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
    if isinstance(target, SIMILARITY_KINDS):
        _need_output(card, "embedding", target)
        return BoundTarget(target, card, _reference(target, text), size)
    if isinstance(target, OutputRegion):
        _need_output(card, "dense", target)
        if isinstance(target, RecordedRegion) and target.needs_mask:
            raise ValueError(
                f"the record of {describe_target(target, card)} keeps its label, not its "
                "mask: draw the region again (a shape or a labels layer) to explain it"
            )
        return BoundTarget(target, card, None, size)
    _need_output(card, "classes", target)
    return BoundTarget(target, card, None, size)


def _reference(target: Prompt | LikeEmbedding, text: TextEncoder | None) -> torch.Tensor:
    if isinstance(target, LikeEmbedding):
        return F.normalize(torch.tensor(target.embedding, dtype=torch.float32), dim=0)
    if text is None:
        raise ValueError(
            "a prompt needs the model's text tower: load a vision-language model with "
            "load_model (its card has a 'text' section naming the tokenizer and template)"
        )
    embeddings = text.embed(target.texts, target.template)
    return F.normalize(embeddings.mean(dim=0), dim=0)


def _need_output(card: ModelCard, output: str, target: Target) -> None:
    if card.output == output:
        return
    what = describe_target(target, card)
    asks = {
        "classes": "a class (or several, or a contrast)",
        "embedding": "a prompt or a likeness to a region",
        "dense": "an output region",
    }
    outputs = {
        "classes": "class logits",
        "embedding": "an image embedding",
        "dense": "dense (per-pixel) logits",
    }
    raise ValueError(
        f"{what} needs a model whose output is {outputs[output]} (card 'output': {output!r}), "
        f"and the card of {card.name!r} says {card.output!r}: "
        f"explain {asks[card.output]} with this model, or set the card's output if it is wrong"
    )


def _per_image(target: Target) -> bool:
    return isinstance(target, Sequence) and not isinstance(target, str)


def _probability_columns(weights: torch.Tensor, classes: int) -> torch.Tensor:
    """Which probabilities add up to the explained one: the positively weighted classes."""
    if weights.shape[1] == 1:  # single logit: column 0 is class 0, column 1 class 1
        positive = (weights[:, 0] > 0).float()
        return torch.stack([1 - positive, positive], dim=1)
    return (weights > 0).float()


def _dense_class_weights(weights: torch.Tensor, classes: int) -> torch.Tensor:
    """Per-pixel weights of the class probabilities (N, classes, h, w) of a region."""
    if weights.shape[1] == 1:
        area = weights.abs()
        positive = (weights > 0).float()
        return torch.cat([area * (1 - positive), area * positive], dim=1)
    return weights.clamp_min(0)


def _mask_on_grid(
    mask: np.ndarray,
    first: int,
    images: int,
    grid: tuple[int, int],
    input_size: tuple[int, int] | None,
) -> torch.Tensor:
    """The region's weight on the output grid (images, 1, h, w): the covered fraction."""
    masks = mask[None] if mask.ndim == 2 else mask[first : first + images]
    if len(masks) not in (1, images):
        raise ValueError(
            f"the output region has {len(mask)} masks for a batch of {images} images; give "
            "one (H, W) mask, or one per image"
        )
    if input_size is not None and masks.shape[-2:] != input_size:
        raise ValueError(
            f"the output region's mask is {masks.shape[-2]} x {masks.shape[-1]} pixels and "
            f"the image {input_size[0]} x {input_size[1]}: rasterise the region on the "
            "explained image's pixels"
        )
    area = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None]
    if tuple(area.shape[-2:]) != grid:
        area = F.adaptive_avg_pool2d(area, grid)
    return area.expand(images, -1, -1, -1) if len(area) == 1 else area
