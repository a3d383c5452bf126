"""The shared tiled loop with and without read-ahead, on the CC0 slide's tissue tiles.

The dock and the local slide runner both use ``explained_batches`` (``explain_tiled``): one
thread reads the next batch of tiles (JPEG-compressed reads here) while the caller explains
the current one. This prints the medians of interleaved rounds of the loop with read-ahead
and reading in turn, and their ratio (> 1: read-ahead is faster).

    python benchmarks/bench_tiled_loop.py [--rounds 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def run_loop(loaded, plan, batch_size: int, read_ahead: bool) -> int:
    """Explain every planned tile through the loop; return the tiles explained."""
    import napari_gradcam as ng

    batches = ng.explained_batches(loaded, plan, batch_size, (0.0, 255.0), read_ahead=read_ahead)
    return sum(len(results.indices) for results in batches)


def read_only(plan, batch_size: int) -> float:
    """Seconds to read every batch, no model: what read-ahead can hide."""
    import napari_gradcam as ng

    start = time.perf_counter()
    for batch in plan.batches(batch_size):
        ng.read_tiles(plan.view, plan.grid.origins[batch], plan.grid.tile)
    return time.perf_counter() - start


def main() -> None:
    """Time both ways and print the medians and ratio as JSON."""
    import napari_gradcam as ng
    from napari_gradcam.data import HE_SLIDE_PATH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    slide = ng.open_slide(HE_SLIDE_PATH)
    loaded = ng.cached_model("demo", None)
    plan = ng.plan_slide(slide, ng.SlideJob(batch_size=args.batch_size), loaded)
    run_loop(loaded, plan, args.batch_size, True)  # warm-up
    seconds: dict[str, list[float]] = {"read_ahead": [], "in_turn": []}
    for index in range(args.rounds):
        for name in list(seconds)[:: 1 if index % 2 else -1]:  # alternate the order
            start = time.perf_counter()
            run_loop(loaded, plan, args.batch_size, name == "read_ahead")
            seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    report = {
        "tiles": len(plan.explained),
        "batch_size": args.batch_size,
        "read_only_s": round(read_only(plan, args.batch_size), 2),
        "median_s": {name: round(value, 2) for name, value in median.items()},
        "ratio_in_turn_over_read_ahead": round(median["in_turn"] / median["read_ahead"], 3),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
