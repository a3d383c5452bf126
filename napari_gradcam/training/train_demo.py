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

from napari_gradcam.core.card import ModelCard
from napari_gradcam.models.demo_net import DEFAULT_LAYER, build_demo_net
from napari_gradcam.training.common import Config, save_demo, train_and_evaluate

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "models" / "demo"
COMMAND = "python -m napari_gradcam.training.train_demo"


def run(out: Path, cfg: Config | None = None) -> ModelCard:
    """Train, evaluate on the held-out region and write weights and card to ``out``."""
    cfg = cfg or Config()
    start = time.perf_counter()
    card = save_demo(
        out,
        "demo_net",
        train_and_evaluate(build_demo_net, cfg),
        cfg,
        COMMAND,
        {},
        name="demo H&E nuclei-density classifier",
        default_layer=DEFAULT_LAYER,
        description=(
            "Tiny CNN trained on the bundled H&E slide (CMU-1-Small-Region, level 0) to tell "
            "background from stroma from nuclei-dense tissue. Labels come from the stain: "
            "tissue = saturated pixels, nuclei = strong hematoxylin (rgb2hed). A demo, not "
            "a diagnostic model."
        ),
    )
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
