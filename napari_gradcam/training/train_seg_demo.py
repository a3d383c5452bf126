"""Train the bundled demo segmenter on stain-derived pixel labels of the bundled H&E slide.

Run ``python -m napari_gradcam.training.train_seg_demo [--out DIR]``. Every pixel is labelled
"background" (outside the tissue mask), "tissue" or "nuclei" (the nuclei mask), with the masks
of :mod:`napari_gradcam.training.stain_labels`. Training crops lie entirely left of the demo
task's held-out split (``x < 1480``); the pixel IoU of each class is measured on the held-out
columns (``x >= 1480``). The script is deterministic (fixed seeds, deterministic algorithms,
one CPU thread) and writes ``demo_segmenter.pt`` (a ``state_dict``) and
``demo_segmenter.json`` (the card) to ``DIR``, by default the package's ``models/demo``
folder.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.tiling.tissue import tissue_mask
from napari_gradcam.data import HE_MPP, read_he_region
from napari_gradcam.models.demo_segmenter import CLASSES, DEFAULT_LAYER, build_demo_segmenter
from napari_gradcam.training.common import augment, to_tensor
from napari_gradcam.training.stain_labels import TISSUE_SPECK_PX, nuclei_mask

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "models" / "demo"
COMMAND = "python -m napari_gradcam.training.train_seg_demo"


@dataclass(frozen=True)
class SegConfig:
    """Training settings (the defaults produced the committed weights)."""

    crop: int = 96
    held_out_x: int = 1480
    steps: int = 400
    batch_size: int = 8
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1


def pixel_labels(rgb: np.ndarray) -> np.ndarray:
    """Return (H, W) uint8 class indices of :data:`CLASSES`: 0 glass, 1 tissue, 2 nuclei."""
    tissue = tissue_mask(rgb, None, min_size=TISSUE_SPECK_PX)
    labels = tissue.astype(np.uint8)
    labels[nuclei_mask(rgb, tissue)] = 2
    return labels


def random_crops(
    rgb: np.ndarray, labels: np.ndarray, cfg: SegConfig, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``cfg.batch_size`` random crops (tiles, labels) lying entirely left of the split."""
    rows = generator.integers(0, rgb.shape[0] - cfg.crop + 1, cfg.batch_size)
    cols = generator.integers(0, cfg.held_out_x - cfg.crop + 1, cfg.batch_size)
    window = [np.s_[r : r + cfg.crop, c : c + cfg.crop] for r, c in zip(rows, cols, strict=True)]
    return np.stack([rgb[w] for w in window]), np.stack([labels[w] for w in window])


def fit_segmenter(
    model: nn.Module,
    rgb: np.ndarray,
    labels: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    cfg: SegConfig,
) -> nn.Module:
    """Train on random crops with AdamW and a one-cycle schedule; return the model in eval mode.

    Each crop and its labels are flipped and rotated together.
    """
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, cfg.learning_rate, cfg.steps)
    crops = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for step in range(cfg.steps):
        tiles, targets = random_crops(rgb, labels, cfg, crops)
        stacked = torch.cat(
            [to_tensor(tiles, mean, std), torch.from_numpy(targets)[:, None].float()], dim=1
        )
        stacked = augment(stacked, generator)
        loss = F.cross_entropy(model(stacked[:, :3]), stacked[:, 3].long())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if (step + 1) % 100 == 0:
            logger.info("step %4d/%d  loss %.4f", step + 1, cfg.steps, loss.item())
    return model.eval()


@torch.no_grad()
def predict_pixels(
    model: nn.Module, rgb: np.ndarray, mean: np.ndarray, std: np.ndarray, band: int = 512
) -> np.ndarray:
    """Return (H, W) predicted classes of an image whose sides are multiples of 4.

    The image runs in bands of ``band`` rows, each with 32 rows of context on both sides, so
    no band edge falls where its prediction is kept.
    """
    margin = 32
    out = np.empty(rgb.shape[:2], dtype=np.uint8)
    for top in range(0, rgb.shape[0], band):
        start, stop = max(top - margin, 0), min(top + band + margin, rgb.shape[0])
        logits = model(to_tensor(np.array(rgb[None, start:stop]), mean, std))
        keep = logits[0].argmax(dim=0).numpy()
        out[top : top + band] = keep[top - start : top - start + min(band, rgb.shape[0] - top)]
    return out


def intersection_over_union(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Return each class's pixel IoU and their mean."""
    scores = {}
    for index, name in enumerate(CLASSES):
        union = np.count_nonzero((predicted == index) | (labels == index))
        scores[name] = np.count_nonzero((predicted == index) & (labels == index)) / union
    scores["mean"] = float(np.mean(list(scores.values())))
    return {name: round(float(value), 4) for name, value in scores.items()}


def run(out: Path, cfg: SegConfig | None = None) -> ModelCard:
    """Train, measure held-out IoU and write weights and card to ``out``."""
    cfg = cfg or SegConfig()
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)
    rgb = read_he_region()
    labels = pixel_labels(rgb)
    pixels = rgb[:, : cfg.held_out_x].reshape(-1, 3) / 255.0
    mean, std = np.round(pixels.mean(axis=0), 4), np.round(pixels.std(axis=0), 4)
    model = fit_segmenter(build_demo_segmenter(), rgb, labels, mean, std, cfg)
    height = rgb.shape[0] // 4 * 4
    width = (rgb.shape[1] - cfg.held_out_x) // 4 * 4
    held_out = np.s_[:height, cfg.held_out_x : cfg.held_out_x + width]
    iou = intersection_over_union(predict_pixels(model, rgb[held_out], mean, std), labels[held_out])
    seconds = time.perf_counter() - start
    logger.info("held-out IoU: %s (%.0f s)", iou, seconds)
    card = ModelCard(
        name="demo H&E nuclei segmenter",
        classes=CLASSES,
        input_size=(cfg.crop, cfg.crop),
        in_channels=3,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        mpp=HE_MPP,
        default_layer=DEFAULT_LAYER,
        output="dense",
        description=(
            "Tiny U-Net trained on the bundled H&E slide (CMU-1-Small-Region, level 0) to "
            "label each pixel background, tissue or nuclei. Labels come from the stain: "
            "tissue = saturated pixels, nuclei = strong hematoxylin (rgb2hed). A demo, not "
            "a diagnostic model."
        ),
        extra={
            "held_out_iou": iou,
            "held_out_region": f"x >= {cfg.held_out_x}",
            "held_out_x": cfg.held_out_x,
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "crop": cfg.crop,
            "training": COMMAND,
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "demo_segmenter.pt")
    card.to_json(out / "demo_segmenter.json")
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
