"""Train the demo slide model: an ABMIL aggregator over the demo encoder's tile embeddings.

Bags come from the CC0 slide (``mil_bags``): positive when they hold enough nuclei-dense tiles.
Trains on bags of the left part of the slide in well under a minute on one CPU thread, then
measures bag accuracy and how well each tile score finds the nuclei-dense tiles of held-out
bags. Writes ``mil_demo.safetensors`` beside the card and the numbers into the card.

    python -m napari_gradcam.models.training.train_mil_demo
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_gradcam.core.mil.aggregators import AttentionMIL
from napari_gradcam.models.training.mil_bags import (
    DEMO_CARD,
    DemoTiles,
    demo_encoder_model,
    demo_tiles,
    make_bags,
)

logger = logging.getLogger(__name__)
SEED = 0
STEPS = 1500
BATCH = 32
TRAIN_BAGS = 4000
HELD_OUT_BAGS = 400


def train(tiles: DemoTiles, kwargs: dict, seed: int = SEED) -> AttentionMIL:
    """Train the aggregator on bags of the training tiles (cross-entropy, Adam)."""
    torch.manual_seed(seed)
    pool = np.flatnonzero(~tiles.held_out)
    bags, labels = make_bags(tiles.positive, pool, TRAIN_BAGS, seed)
    x = torch.from_numpy(tiles.embeddings[bags]).float()
    y = torch.from_numpy(labels)
    model = AttentionMIL(**kwargs)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _step in range(STEPS):
        batch = torch.randint(0, len(x), (BATCH,), generator=generator)
        optimiser.zero_grad()
        loss_fn(model(x[batch]), y[batch]).backward()
        optimiser.step()
    return model.eval()


def bag_accuracy(model: AttentionMIL, tiles: DemoTiles, seed: int = SEED + 1) -> float:
    """Accuracy on bags of held-out tiles."""
    bags, labels = make_bags(tiles.positive, np.flatnonzero(tiles.held_out), HELD_OUT_BAGS, seed)
    with torch.inference_mode():
        predicted = model(torch.from_numpy(tiles.embeddings[bags]).float()).argmax(dim=1)
    return float((predicted.numpy() == labels).mean())


def run(card: Path = DEMO_CARD) -> dict:
    """Train, evaluate, write the weights and the card's numbers; return the numbers."""
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    start = time.perf_counter()
    data = json.loads(card.read_text())
    tiles = demo_tiles(demo_encoder_model(card))
    model = train(tiles, data["aggregator"]["kwargs"])
    numbers = {
        "held_out_bag_accuracy": round(bag_accuracy(model, tiles), 4),
        "tiles": len(tiles.embeddings),
        "nuclei_dense_tiles": int(tiles.positive.sum()),
        "held_out_tiles": int(tiles.held_out.sum()),
        "training": "python -m napari_gradcam.models.training.train_mil_demo",
    }
    weights = card.parent / data["aggregator"]["weights"]
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    data["extra"] = numbers
    card.write_text(json.dumps(data, indent=2) + "\n")
    logger.info("%s in %.1f s", numbers, time.perf_counter() - start)
    return numbers


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, default=DEMO_CARD, help="the slide-model card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(args.card)


if __name__ == "__main__":
    main()
