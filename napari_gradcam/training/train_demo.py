"""Train the bundled CNN demo model on stain-derived labels of the bundled H&E slide.

Run ``python -m napari_gradcam.training.train_demo [--out DIR]``. The script is
deterministic (fixed seeds, deterministic algorithms, two CPU threads) and writes
``demo_net.pt`` (a ``state_dict``) and ``demo_net.json`` (the model card) to ``DIR``,
by default the package's ``models/demo`` folder. The task, labels and held-out split are
described in :mod:`napari_gradcam.training.common`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from napari_gradcam.core.card import ModelCard
from napari_gradcam.data import HE_MPP
from napari_gradcam.models.demo_net import DEFAULT_LAYER, build_demo_net
from napari_gradcam.training.common import (
    Config,
    Trained,
    evaluation_extra,
    train_and_evaluate,
)
from napari_gradcam.training.stain_labels import CLASSES

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "demo"
COMMAND = "python -m napari_gradcam.training.train_demo"


def build_demo_card(trained: Trained, cfg: Config) -> ModelCard:
    """Return the demo model's card, with evaluation results and label rules in ``extra``."""
    return ModelCard(
        name="demo H&E nuclei-density classifier",
        classes=CLASSES,
        input_size=(cfg.tile_size, cfg.tile_size),
        in_channels=3,
        mean=tuple(float(v) for v in trained.mean),
        std=tuple(float(v) for v in trained.std),
        mpp=HE_MPP,
        default_layer=DEFAULT_LAYER,
        description=(
            "Tiny CNN trained on the bundled H&E slide (CMU-1-Small-Region, level 0) to tell "
            "background from stroma from nuclei-dense tissue. Labels come from the stain: "
            "tissue = saturated pixels, nuclei = strong hematoxylin (rgb2hed). A demo, not "
            "a diagnostic model."
        ),
        extra=evaluation_extra(trained, cfg, COMMAND),
    )


def run(out: Path, cfg: Config | None = None) -> ModelCard:
    """Train, evaluate on the held-out region and write weights and card to ``out``."""
    cfg = cfg or Config()
    start = time.perf_counter()
    trained = train_and_evaluate(build_demo_net, cfg)
    card = build_demo_card(trained, cfg)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(trained.model.state_dict(), out / "demo_net.pt")
    card.to_json(out / "demo_net.json")
    logger.info("wrote %s in %.1f s", out, time.perf_counter() - start)
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
