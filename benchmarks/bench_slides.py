"""Whole-slide numbers: throughput, peak memory against slide size, time to first tiles.

1. throughput: tiled Grad-CAM over the tissue tiles of the CC0 slide (read, explain, stitch,
   with the local runner's driver ``explain_tiled``) against plain inference over the same
   tiles read by the same read-ahead loop; also the two on tiles already in memory. Medians
   of interleaved rounds. Target >= 0.85.
2. memory: the whole slide runner (tissue, tiles, zarr heatmap, CSV, overlay) on the CC0
   slide and on a lazily generated 40,000 x 40,000 pyramid, each in a fresh child process;
   peak resident set (VmHWM) after start-up and over the run.
3. widget: napari under Xvfb, the CC0 slide opened with the plugin's reader, the dock's
   Explain clicked: seconds until the first heatmap rows are on the layer (cold: model not yet
   loaded; warm: loaded; again: tissue also known), and until the end.

    python benchmarks/bench_slides.py [throughput|memory|widget|all] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
MEMORY_BOUND_MIB = 640
"""Stated bound on the runner's peak resident set, whatever the slide's size."""


def cc0_plan(batch_size: int = 64):
    import napari_gradcam as ng
    from napari_gradcam.data import HE_SLIDE_PATH

    slide = ng.open_slide(HE_SLIDE_PATH)
    job = ng.SlideJob(batch_size=batch_size)
    loaded = ng.cached_model("demo", None)
    return slide, job, loaded, ng.plan_slide(slide, job, loaded)


def run_pipeline(loaded, job, plan, explain: bool) -> None:
    """Push every tissue tile through the local tile loop (read ahead, in grid order).

    Explaining runs the slide runner's own driver (explain and stitch); inferring runs a
    forward per batch in the same loop.
    """
    import torch

    import napari_gradcam as ng

    if explain:
        ng.run_to_end(ng.explain_tiled(loaded, plan, (0.0, 255.0), batch_size=job.batch_size))
        return

    def infer(tiles: np.ndarray, indices: np.ndarray) -> None:
        batch = ng.preprocess_tiles(tiles, loaded.card, (0.0, 255.0), torch.device("cpu"))
        with torch.inference_mode():
            loaded.module(batch)

    for _ in ng.mapped_batches(plan, job.batch_size, infer):
        pass


def in_memory(loaded, plan, tiles: np.ndarray, explain: bool, batch_size: int) -> None:
    """The model alone over tiles already read (explain_tile_batch, or a forward)."""
    import torch

    import napari_gradcam as ng

    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first : first + batch_size]
        if explain:
            indices = plan.explained[first : first + batch_size]
            ng.explain_tile_batch(loaded, chunk, indices, plan.settings, (0.0, 255.0))
        else:
            batch = ng.preprocess_tiles(chunk, loaded.card, (0.0, 255.0), torch.device("cpu"))
            with torch.inference_mode():
                loaded.module(batch)


def timed(run) -> tuple[float, float]:
    """(wall, CPU) seconds of ``run()``; CPU time is this process's, all threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def throughput(rounds: int) -> dict:
    """Tiles per second explained vs inferred, in the runner and in memory (medians)."""
    import napari_gradcam as ng

    _, job, loaded, plan = cc0_plan()
    n = len(plan.explained)
    tiles = ng.read_tiles(plan.view, plan.grid.origins[plan.explained], plan.grid.tile)
    runs = {
        "infer": lambda: run_pipeline(loaded, job, plan, explain=False),
        "explain": lambda: run_pipeline(loaded, job, plan, explain=True),
        "infer_in_memory": lambda: in_memory(loaded, plan, tiles, False, job.batch_size),
        "explain_in_memory": lambda: in_memory(loaded, plan, tiles, True, job.batch_size),
    }
    runs["explain"]()  # warm-up
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for index in range(rounds):
        for name in list(runs)[:: 1 if index % 2 else -1]:  # alternate the order
            times[name].append(timed(runs[name]))
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    return {
        "tissue_tiles": n,
        "skipped_tiles": plan.grid.n_tiles - n,
        "tiles_per_wall_s": {k: round(n / v, 1) for k, v in wall.items()},
        "ratio_runner_wall": round(wall["infer"] / wall["explain"], 3),
        "ratio_runner_cpu": round(cpu["infer"] / cpu["explain"], 3),
        "ratio_in_memory_wall": round(wall["infer_in_memory"] / wall["explain_in_memory"], 3),
        "ratio_in_memory_cpu": round(cpu["infer_in_memory"] / cpu["explain_in_memory"], 3),
        "target": 0.85,
    }


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_case(case: str) -> None:
    """Child process: explain a whole slide with the runner; print peak RSS as JSON."""
    import napari_gradcam as ng
    from napari_gradcam.data import HE_SLIDE_PATH

    slide = ng.open_slide(HE_SLIDE_PATH) if case == "cc0" else ng.synthetic_slide(40_000)
    ng.cached_model("demo", None)
    ready = peak_rss_mib()
    out = Path(tempfile.mkdtemp(prefix="bench_slides_"))
    try:
        start = time.perf_counter()
        outputs = ng.SlideOutputs.for_slide(case, out)
        summary = ng.run_to_end(ng.explain_slide(slide, ng.SlideJob(), outputs))
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(
        json.dumps(
            {
                "slide": slide.name,
                "level0": list(slide.shape),
                "tiles": summary["tiles"],
                "map_shape": summary["heatmap"]["shape"],
                "seconds": round(seconds, 1),
                "rss_after_startup_mib": round(ready, 1),
                "peak_rss_mib": round(peak_rss_mib(), 1),
            }
        )
    )


def memory() -> dict:
    results = {}
    for case in ("cc0", "synthetic40k"):
        environment = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "0"}
        command = [sys.executable, str(HERE), "memory-case", case]
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
        results[case] = json.loads(done.stdout.strip().splitlines()[-1])
    growth = {k: v["peak_rss_mib"] - v["rss_after_startup_mib"] for k, v in results.items()}
    results["run_growth_mib"] = {k: round(v, 1) for k, v in growth.items()}
    results["bound_mib"] = MEMORY_BOUND_MIB
    results["within_bound"] = all(
        results[k]["peak_rss_mib"] <= MEMORY_BOUND_MIB for k in ("cc0", "synthetic40k")
    )
    return results


def widget() -> dict:
    if os.environ.get("DISPLAY"):
        return widget_case()
    command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, str(HERE)]
    done = subprocess.run([*command, "widget-case"], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def widget_case() -> dict:
    sys.path.insert(0, str(HERE.parent))
    from widget_timing import time_widget

    return time_widget()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["all", "throughput", "memory", "widget", "memory-case", "widget-case"]
    parser.add_argument("part", nargs="?", default="all", choices=parts)
    parser.add_argument("case", nargs="?", default="cc0")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.part == "memory-case":
        memory_case(args.case)
        return
    if args.part == "widget-case":
        print(json.dumps(widget_case()))
        return
    runs = {"throughput": lambda: throughput(args.rounds), "memory": memory, "widget": widget}
    chosen = runs if args.part == "all" else {args.part: runs[args.part]}
    for name, run in chosen.items():
        print(f"{name}: {json.dumps(run(), indent=1)}", flush=True)


if __name__ == "__main__":
    main()
