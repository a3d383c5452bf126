"""Train the bundled demo vision-language model on captioned tiles of the bundled H&E slide.

Run ``python -m napari_gradcam.training.train_vlm_demo [--out DIR]``. Each training tile of
the demo task (:mod:`napari_gradcam.training.common`: same tiles, labels and held-out third)
is captioned with a phrasing of its class (:mod:`napari_gradcam.training.vlm_captions`) in
the model's prompt template, and both towers learn with a CLIP loss in which captions of the
tile's class count as matches: two tiles of one class in a batch are not pushed apart. The
script is deterministic (fixed seeds, deterministic algorithms, one CPU thread) and writes
``demo_vlm.pt`` (a ``state_dict``) and ``demo_vlm.json`` (the card, with held-out zero-shot
accuracies) to ``DIR``, by default the package's ``models/demo`` folder.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_gradcam.core.card import ModelCard, TextCard
from napari_gradcam.data import HE_MPP, read_he_region
from napari_gradcam.models.demo_vlm import (
    DEFAULT_LAYER,
    TEMPLATE,
    VOCABULARY,
    DemoVlm,
    build_demo_vlm,
)
from napari_gradcam.training.common import (
    Config,
    accuracies,
    augment,
    fit,
    make_splits,
    to_tensor,
)
from napari_gradcam.training.stain_labels import CLASSES, MIN_TISSUE_FRACTION
from napari_gradcam.training.vlm_captions import CLASS_PROMPTS, TRAINING_CAPTIONS, UNSEEN_CAPTIONS

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "models" / "demo"
COMMAND = "python -m napari_gradcam.training.train_vlm_demo"
TEMPERATURE = 0.01
"""Softmax temperature of the contrastive loss (cosine similarities are divided by it).

Low, as CLIP's learned one (0.01): matching tiles and captions then reach cosines near 0.2, not
near 1, and a prompt's Grad-CAM follows the prompt's direction instead of the part of it the
tile's embedding lacks (the gradient of a cosine is the prompt's direction minus the cosine
times the embedding's). See docs/demo-models.md for the temperatures tried."""
CONFIG = Config(epochs=12, learning_rate=3e-3, threads=1)
"""The settings of the committed weights."""


def captions(labels: torch.Tensor, generator: torch.Generator) -> list[str]:
    """Return one training caption per tile: a random phrasing of its class, templated."""
    picks = torch.randint(0, 1 << 30, (len(labels),), generator=generator).tolist()
    phrasings = [TRAINING_CAPTIONS[CLASSES[label]] for label in labels.tolist()]
    return [TEMPLATE.format(p[pick % len(p)]) for p, pick in zip(phrasings, picks, strict=True)]


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CLIP loss over a batch in which every caption of a tile's class is a match.

    The target of each row (image to captions, and caption to images) is spread evenly over
    the batch entries of the same class.
    """
    similarity = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T / TEMPERATURE
    same = (labels[:, None] == labels[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(similarity, targets) + F.cross_entropy(similarity.T, targets)) / 2


def fit_contrastive(model: DemoVlm, x: torch.Tensor, y: torch.Tensor, cfg: Config) -> DemoVlm:
    """Train both towers with ``fit`` on each batch's contrastive loss; return it in eval mode.

    A batch's loss compares its augmented tiles' embeddings with captions sampled per tile.
    """

    def batch_loss(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        image = model(augment(x[batch], generator))
        text = model.encode_text(captions(y[batch], generator))
        return contrastive_loss(image, text, y[batch])

    return fit(model, x, y, cfg, batch_loss=batch_loss)


@torch.no_grad()
def class_embeddings(model: DemoVlm, prompts: dict[str, tuple[str, ...]]) -> torch.Tensor:
    """Return (classes, D): per class, the normalised mean of its prompts' normalised embeddings."""
    rows = []
    for name in CLASSES:
        text = model.encode_text([TEMPLATE.format(p) for p in prompts[name]])
        rows.append(F.normalize(F.normalize(text, dim=1).mean(dim=0), dim=0))
    return torch.stack(rows)


@torch.no_grad()
def zero_shot(model: DemoVlm, x: torch.Tensor, prompts: dict[str, tuple[str, ...]]) -> np.ndarray:
    """Return each tile's class by cosine similarity to the classes' prompt embeddings."""
    classes = class_embeddings(model, prompts)
    image = torch.cat([F.normalize(model(part), dim=1) for part in x.split(256)])
    return (image @ classes.T).argmax(dim=1).numpy()


def zero_shot_scores(model: DemoVlm, x: torch.Tensor, labels: np.ndarray) -> dict[str, Any]:
    """Held-out zero-shot accuracies with three prompt sets: ensembles, one prompt, unseen."""
    prompt_sets = {
        "training_captions": TRAINING_CAPTIONS,
        "class_prompt": {name: (prompt,) for name, prompt in CLASS_PROMPTS.items()},
        "unseen_captions": UNSEEN_CAPTIONS,
    }
    scores = {}
    for key, prompts in prompt_sets.items():
        result = accuracies(zero_shot(model, x, prompts), labels)
        scores[key] = {name: round(value, 4) for name, value in result.items()}
    return scores


def run(out: Path, cfg: Config = CONFIG) -> ModelCard:
    """Train, score zero-shot on the held-out region and write weights and card to ``out``."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)
    train, held_out, cutoff = make_splits(read_he_region(), cfg)
    pixels = train.tiles.reshape(-1, 3) / 255.0
    mean, std = np.round(pixels.mean(axis=0), 4), np.round(pixels.std(axis=0), 4)
    x, y = to_tensor(train.tiles, mean, std), torch.from_numpy(train.labels)
    model = fit_contrastive(build_demo_vlm(), x, y, cfg)
    scores = zero_shot_scores(model, to_tensor(held_out.tiles, mean, std), held_out.labels)
    seconds = time.perf_counter() - start
    logger.info("held-out zero-shot: %s (%.0f s)", scores, seconds)
    card = ModelCard(
        name="demo H&E vision-language model",
        input_size=(cfg.tile_size, cfg.tile_size),
        in_channels=3,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        mpp=HE_MPP,
        default_layer=DEFAULT_LAYER,
        output="embedding",
        text=TextCard(template=TEMPLATE),
        description=(
            "Tiny CLIP-style model trained on the bundled H&E slide (CMU-1-Small-Region, "
            "level 0): a CNN image tower and a bag-of-words text tower over a "
            f"{len(VOCABULARY)}-word vocabulary, trained on captions written from the demo "
            "classifier's stain-derived labels (background, stroma, nuclei-dense). A demo, "
            "not a diagnostic model."
        ),
        extra={
            "held_out_zero_shot": scores,
            "held_out_region": f"x >= {cfg.held_out_x}",
            "held_out_x": cfg.held_out_x,
            "tile_size": cfg.tile_size,
            "stride": cfg.stride,
            "min_tissue_fraction": MIN_TISSUE_FRACTION,
            "nuclei_fraction_cutoff": round(cutoff, 6),
            "epochs": cfg.epochs,
            "temperature": TEMPERATURE,
            "training": COMMAND,
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "demo_vlm.pt")
    card.to_json(out / "demo_vlm.json")
    return card


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(args.out)


if __name__ == "__main__":
    main()
