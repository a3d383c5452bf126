"""What the bundled demo models share: tiles, labels, split, augmentation, training loop.

Both demos learn the same task on the same slide: 96 x 96 px tiles at level 0 (stride 48)
are "background" (little tissue), "stroma" or "nuclei-dense" (nuclear fraction of tissue
above a quantile of the training tissue tiles); see
:mod:`napari_gradcam.training.stain_labels`. The right-most third of the slide (columns
``x >= held_out_x``) is held out for evaluation. Training is deterministic (fixed seeds,
deterministic algorithms, a fixed number of CPU threads).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.data import HE_MPP, read_he_region
from napari_gradcam.training.attention_penalty import AttentionPenalty
from napari_gradcam.training.stain_labels import CLASSES, MIN_TISSUE_FRACTION, slide_evidence

logger = logging.getLogger(__name__)

Penalty = Callable[[], torch.Tensor]
"""A term added to the loss after each training forward (it reads what the forward left)."""
BatchLoss = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""The loss of one batch (indices into the training set), drawing its augmentation from the
generator."""


@dataclass(frozen=True)
class Config:
    """Training settings (the defaults produced the CNN demo's committed weights)."""

    tile_size: int = 96
    stride: int = 48
    held_out_x: int = 1480
    nuclei_quantile: float = 0.6
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    max_grad_norm: float | None = None
    attention_entropy: float = 0.0
    attention_locality: float = 0.0
    locality_radius: int = 1
    seed: int = 0
    threads: int = 2


@dataclass(frozen=True)
class Split:
    """Tiles of one part of the slide: (N, T, T, 3) uint8 images and (N,) labels."""

    tiles: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Trained:
    """A trained model, the normalisation it was trained with and its held-out scores."""

    model: nn.Module
    mean: np.ndarray
    std: np.ndarray
    nuclei_cutoff: float
    scores: dict[str, float]


def make_splits(rgb: np.ndarray, cfg: Config) -> tuple[Split, Split, float]:
    """Label the slide's tile grid and split it into training and held-out tiles.

    Returns ``(train, held_out, nuclei_cutoff)``: the tiles entirely left of
    ``cfg.held_out_x``, those entirely right of it, and the nuclear fraction separating
    "stroma" from "nuclei-dense" (from training tiles).
    """
    evidence = slide_evidence(rgb, cfg.tile_size, cfg.stride)
    cols = evidence.origins[:, 1]
    train = cols + cfg.tile_size <= cfg.held_out_x
    held_out = cols >= cfg.held_out_x
    tissue = evidence.tissue_fraction >= MIN_TISSUE_FRACTION
    cutoff = float(np.quantile(evidence.nuclei_fraction[train & tissue], cfg.nuclei_quantile))
    labels = evidence.labels(cutoff)
    size = cfg.tile_size

    def crop(selected: np.ndarray) -> Split:
        origins = evidence.origins[selected]
        tiles = np.stack([rgb[r : r + size, c : c + size] for r, c in origins])
        return Split(tiles, labels[selected])

    return crop(train), crop(held_out), cutoff


def to_tensor(tiles: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """Return (N, 3, H, W) float32 tiles scaled to [0, 1] and normalised per channel."""
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean_t) / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply a random flip and rotation by a multiple of 90 degrees to each tile."""
    codes = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = torch.empty_like(x)
    for code in range(8):
        idx = torch.nonzero(codes == code).flatten()
        part = torch.rot90(x[idx], code % 4, dims=(2, 3))
        out[idx] = torch.flip(part, dims=(3,)) if code >= 4 else part
    return out


def epoch_order(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return a shuffled epoch of tile indices with background capped at the largest other class.

    Background tiles are plentiful and easy; a fresh random subset of them each epoch keeps
    the classes balanced and the epochs short.
    """
    order = torch.randperm(len(y), generator=generator)
    cap = int(torch.bincount(y[y != 0]).max())
    keep = torch.cat([order[y[order] == 0][:cap], order[y[order] != 0]])
    return keep[torch.randperm(len(keep), generator=generator)]


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: Config,
    penalty: Penalty | None = None,
    batch_loss: BatchLoss | None = None,
) -> nn.Module:
    """Train ``model`` with AdamW and a one-cycle learning-rate schedule; return it in eval mode.

    Each batch's loss is ``batch_loss(batch, generator)`` (default: the cross-entropy of the
    augmented tiles' logits); ``penalty()``, when given, is added to it.
    """
    if batch_loss is None:
        cross_entropy = nn.CrossEntropyLoss()

        def batch_loss(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return cross_entropy(model(augment(x[batch], generator)), y[batch])

    optimiser = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = len(epoch_order(y, generator).split(cfg.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, cfg.learning_rate, total_steps=cfg.epochs * batches
    )
    for epoch in range(cfg.epochs):
        model.train()
        order = epoch_order(y, generator)
        total = 0.0
        for batch in order.split(cfg.batch_size):
            loss = batch_loss(batch, generator)
            if penalty is not None:
                loss = loss + penalty()
            optimiser.zero_grad()
            loss.backward()
            if cfg.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        logger.info("epoch %2d/%d  loss %.4f", epoch + 1, cfg.epochs, total / len(order))
    return model.eval()


@torch.no_grad()
def predicted_classes(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Return the predicted class index of every tile."""
    model.eval()
    return torch.cat([model(part).argmax(1) for part in x.split(batch_size)]).numpy()


def accuracies(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Return overall accuracy, per-class recall and balanced accuracy (mean recall)."""
    recall = {
        name: float(np.mean(predicted[labels == i] == i))
        for i, name in enumerate(CLASSES)
        if np.any(labels == i)
    }
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(np.mean(list(recall.values()))),
        **{f"recall_{name}": value for name, value in recall.items()},
    }


def train_and_evaluate(build: Callable[[int], nn.Module], cfg: Config) -> Trained:
    """Train ``build(n_classes)`` on the slide's training tiles and score it on held-out ones.

    With a nonzero ``cfg.attention_entropy`` or ``cfg.attention_locality`` the model's
    :class:`~napari_gradcam.training.attention_penalty.AttentionPenalty` joins the loss.
    """
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)
    train, held_out, cutoff = make_splits(read_he_region(), cfg)
    logger.info(
        "tiles: %d training %s, %d held out %s; nuclei cutoff %.4f",
        len(train.labels),
        np.bincount(train.labels, minlength=len(CLASSES)).tolist(),
        len(held_out.labels),
        np.bincount(held_out.labels, minlength=len(CLASSES)).tolist(),
        cutoff,
    )
    pixels = train.tiles.reshape(-1, 3) / 255.0
    mean, std = np.round(pixels.mean(axis=0), 4), np.round(pixels.std(axis=0), 4)
    model = build(len(CLASSES))
    penalty = None
    if cfg.attention_entropy or cfg.attention_locality:
        terms = AttentionPenalty(
            model, cfg.attention_entropy, cfg.attention_locality, cfg.locality_radius
        )
        penalty = terms.penalty
    x, y = to_tensor(train.tiles, mean, std), torch.from_numpy(train.labels)
    model = fit(model, x, y, cfg, penalty)
    scores = accuracies(
        predicted_classes(model, to_tensor(held_out.tiles, mean, std)), held_out.labels
    )
    logger.info("held-out scores: %s", {k: round(v, 4) for k, v in scores.items()})
    return Trained(model, mean, std, cutoff, scores)


def evaluation_extra(trained: Trained, cfg: Config, command: str) -> dict[str, Any]:
    """Return the card's ``extra``: held-out scores, the split and the label rules."""
    scores = trained.scores
    return {
        "held_out_accuracy": round(scores["accuracy"], 4),
        "held_out_balanced_accuracy": round(scores["balanced_accuracy"], 4),
        "held_out_recall": {
            name: round(scores[f"recall_{name}"], 4)
            for name in CLASSES
            if f"recall_{name}" in scores
        },
        "held_out_region": f"x >= {cfg.held_out_x}",
        "held_out_x": cfg.held_out_x,
        "tile_size": cfg.tile_size,
        "stride": cfg.stride,
        "min_tissue_fraction": MIN_TISSUE_FRACTION,
        "nuclei_fraction_cutoff": round(trained.nuclei_cutoff, 6),
        "training": command,
    }


def save_demo(
    out: Path,
    stem: str,
    trained: Trained,
    cfg: Config,
    command: str,
    extra: dict[str, Any],
    **card_fields: Any,
) -> ModelCard:
    """Write ``<stem>.pt`` (the ``state_dict``) and ``<stem>.json`` (the card) to ``out``.

    The card describes the bundled slide's task; ``card_fields`` name the model (``name``,
    ``default_layer``, ``description``) and ``extra`` follows :func:`evaluation_extra`.
    """
    card = ModelCard(
        classes=CLASSES,
        input_size=(cfg.tile_size, cfg.tile_size),
        in_channels=3,
        mean=tuple(float(v) for v in trained.mean),
        std=tuple(float(v) for v in trained.std),
        mpp=HE_MPP,
        extra={**evaluation_extra(trained, cfg, command), **extra},
        **card_fields,
    )
    out.mkdir(parents=True, exist_ok=True)
    torch.save(trained.model.state_dict(), out / f"{stem}.pt")
    card.to_json(out / f"{stem}.json")
    return card
