"""Planning a tiled region: the map's geometry from a dry probe against explaining a blank tile.

Before tiling, the map's layer, shape and stride must be known. The old way explained one
blank input-sized tile with the method itself (Score-CAM: one masked forward per channel);
``map_geometry`` runs one inference forward to the layer (cached by the loaded model per input
size) or, for occlusion, none. Printed: medians of both, and their ratio, on the bundled demo
model.

    python benchmarks/bench_geometry.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

METHODS = ("gradcam", "scorecam", "occlusion")


def _seconds(call, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import torch

    import napari_gradcam as ng

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPUs)")
    args = parser.parse_args()
    rounds = args.rounds
    torch.set_num_threads(args.threads)
    loaded = ng.load_model("demo")
    size = loaded.card.input_size
    blank = torch.zeros((1, loaded.card.in_channels, *size))
    print(f"demo model, {size[0]} x {size[1]} tile, {args.threads} thread(s), medians of {rounds}")
    print(f"{'method':<10} {'blank explain':>14} {'probe (cold)':>13} {'probe (cached)':>15} ratio")
    for method in METHODS:
        old = _seconds(lambda m=method: ng.explain(loaded, blank, method=m, target=0), rounds)

        def cold(m: str = method) -> None:
            loaded.layers.clear()
            ng.map_geometry(loaded, size, method=m)

        new_cold = _seconds(cold, rounds)
        new_warm = _seconds(lambda m=method: ng.map_geometry(loaded, size, method=m), rounds)
        ratio = f"{old / new_cold:.1f}x" if new_cold > 1e-3 else "no forward"
        print(
            f"{method:<10} {old * 1e3:>11.1f} ms {new_cold * 1e3:>10.1f} ms "
            f"{new_warm * 1e3:>12.3f} ms {ratio:>6}"
        )


if __name__ == "__main__":
    main()
