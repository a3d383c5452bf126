"""Slide-level models, measured side by side: embedding, attribution, memory in slide size.

1. Embedding throughput of ``slide_embeddings`` (tissue tiling, read-ahead, cache write)
   against plain encoder inference over the same tiles already in memory, same batch size and
   preprocessing, best of ``--repeats`` interleaved runs after a warm-up (bar: >= 0.9x).
2. Attribution over 10,000 embeddings: gradient x embedding (bar: < 1 s on CPU) and
   integrated gradients, with the demo slide model's aggregator.
3. Peak memory (max RSS of a fresh process) embedding synthetic slides of two sizes.

    python benchmarks/bench_mil.py [--small 3072 --large 6144 --threads 1 --repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import napari_gradcam as ng

BATCH = 64
DEMO_SLIDE_MODEL_CARD = Path(ng.__file__).parent / "models" / "demo" / "mil_demo.json"
"""The bundled demo slide-model card."""
"""Tiles per encoder call, for ``slide_embeddings`` (its default) and plain inference alike."""


def embedding_ratio(repeats: int = 5) -> tuple[int, dict[str, list[float]]]:
    """Tiles, and seconds of each run of: ``slide_embeddings`` on the CC0 slide (end to end:
    tissue, tiling, reading, encoder, cache write), its tissue + tiling plan alone, and plain
    encoder inference over the same tiles already in memory (same batch size, same
    preprocessing); ``repeats`` interleaved runs after one warm-up of each (imports, first
    calls)."""
    from napari_gradcam.data import HE_SLIDE_PATH

    model = _model()
    slide = ng.open_slide(HE_SLIDE_PATH)

    def ours() -> object:
        with tempfile.TemporaryDirectory() as cache:
            return ng.slide_embeddings(slide, model, overlap=0.5, batch_size=BATCH, cache_dir=cache)

    result = ours()
    level = np.asarray(slide.levels[0])
    tiles = np.stack([level[y0:y1, x0:x1] for y0, x0, y1, x1 in result.boxes.astype(int)])
    card, cpu = model.encoder.card, torch.device("cpu")

    def plain() -> None:
        with torch.inference_mode():
            for i in range(0, len(tiles), BATCH):
                model.encoder.module(ng.preprocess_tiles(tiles[i : i + BATCH], card, (0, 255), cpu))

    plain()
    plan_job = ng.SlideJob(overlap=0.5, min_tissue=0.1)  # the tissue + tiling plan of ``ours``
    runs: dict[str, list[float]] = {"ours": [], "plain": [], "plan": []}
    for _ in range(repeats):
        runs["ours"].append(_seconds(ours))
        runs["plain"].append(_seconds(plain))
        runs["plan"].append(_seconds(lambda: ng.plan_slide(slide, plan_job, model.encoder)))
    return len(tiles), runs


def _seconds(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def embed_only(size: int) -> None:
    """Embed a synthetic slide of ``size`` x ``size`` pixels (for the memory comparison)."""
    with tempfile.TemporaryDirectory() as cache:
        ng.slide_embeddings(
            ng.synthetic_slide(size, mpp=0.499, tissue_share=0.3), _model(), cache_dir=cache
        )


def _model() -> object:
    return ng.load_slide_model(DEMO_SLIDE_MODEL_CARD, device="cpu")


def attribution_seconds(n: int = 10_000) -> dict[str, float]:
    """Seconds of each attribution over ``n`` random embeddings of the demo's width."""
    model = _model()
    bag = torch.rand(n, model.width) * 2
    out = {}
    start = time.perf_counter()
    ng.gradient_x_embedding(model.aggregator, bag, 1)
    out["grad_x_embedding"] = time.perf_counter() - start
    start = time.perf_counter()
    ig = ng.integrated_gradients(model.aggregator, bag, 1)
    out["integrated_gradients"] = time.perf_counter() - start
    out["ig_completeness_error"] = ig.completeness_error
    return out


def peak_rss_mb(size: int) -> float:
    """Max RSS (MB) of a fresh process that embeds a synthetic slide of ``size`` pixels."""
    code = (
        f"import sys, runpy; sys.argv = ['x', '--child', '{size}']; "
        f"runpy.run_path({__file__!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Print the three comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=3072)
    parser.add_argument("--large", type=int, default=6144)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved embedding runs")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        embed_only(args.child)
        sys.stdout.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}\n")
        return
    tiles, runs = embedding_ratio(args.repeats)
    ours, planning, plain = (min(runs[name]) for name in ("ours", "plan", "plain"))
    pairs = ", ".join(f"{p / o:.2f}x" for o, p in zip(runs["ours"], runs["plain"], strict=True))
    sys.stdout.write(
        f"embedding {tiles} tiles of the CC0 slide (best of {args.repeats}): slide_embeddings "
        f"{tiles / ours:.1f} tiles/s end to end ({planning:.2f} s of it tissue + tiling plan), "
        f"plain encoder on tiles in memory {tiles / plain:.1f} tiles/s; ratio of the best runs "
        f"{plain / ours:.2f}x end to end (each run: {pairs}), {plain / (ours - planning):.2f}x "
        "without the plan (bar >= 0.9x)\n"
    )
    seconds = attribution_seconds()
    sys.stdout.write(
        f"attribution over 10,000 embeddings: grad x embedding {seconds['grad_x_embedding']:.3f} s "
        f"(bar < 1 s), IG {seconds['integrated_gradients']:.3f} s (completeness error "
        f"{seconds['ig_completeness_error']:.2%})\n"
    )
    small, large = peak_rss_mb(args.small), peak_rss_mb(args.large)
    sys.stdout.write(
        f"peak RSS: {args.small}^2 slide {small:.0f} MB, {args.large}^2 slide {large:.0f} MB "
        f"(ratio {large / small:.2f}x for {(args.large / args.small) ** 2:.0f}x the pixels)\n"
    )


if __name__ == "__main__":
    main()
