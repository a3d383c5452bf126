"""Cost of every CAM family against its yardstick, side by side in one run.

- Gradient methods (ResNet-18, 1 x 3 x 224 x 224, layer4) against one inference forward.
- Score-CAM and Ablation-CAM against torchcam's ScoreCAM (when torchcam is installed).
- Eigen-CAM on a 96 x 96 x 512 activation against full SVDs (numpy and torch).

Times are medians of interleaved rounds in this process; extra peak memory is measured in a
fresh child process per op (Linux VmHWM after a reset, glibc returning freed blocks at once),
as in bench_explain.py. Ratios, not absolute numbers, are the result.

    python benchmarks/bench_methods.py [--rounds 5] [--slow-rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_explain import proc_status_kb
from resnet18 import resnet18

import napari_gradcam as ng

SHAPE = (1, 3, 224, 224)
MASKED_FORWARDS = 512
ACTIVATION = (1, 512, 96, 96)
GRADIENT = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "guided-gradcam"]
Op = Callable[[], object]


def model_ops(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Op]:
    """The ops on the ResNet-18: a forward, each method, and torchcam's Score-CAM."""
    with torch.inference_mode():
        target = int(model(x).argmax())

    def forward() -> object:
        with torch.inference_mode():
            return model(x)

    def method(name: str) -> Op:
        return lambda: ng.explain(model, x, method=name, layer="layer4", target=target)

    ops = {"forward": forward, **{name: method(name) for name in GRADIENT}}
    ops["scorecam"] = method("scorecam")
    ops["scorecam-bf16"] = lambda: ng.explain(
        model, x, method="scorecam", layer="layer4", target=target, bfloat16=True
    )
    ops["ablationcam"] = method("ablationcam")
    ops["512-forwards"] = plain_forwards(model, x)
    try:
        from torchcam.methods import ScoreCAM
    except ImportError:
        return ops

    def torchcam_scorecam() -> object:
        extractor = ScoreCAM(model, "layer4", input_shape=tuple(x.shape[1:]))
        try:
            with torch.inference_mode():
                model(x)
            return extractor([target])
        finally:
            extractor.remove_hooks()

    ops["torchcam-scorecam"] = torchcam_scorecam
    return ops


def plain_forwards(model: torch.nn.Module, x: torch.Tensor) -> Op:
    """512 plain forwards in chunks of 32, as torchcam's Score-CAM runs them."""
    masked = x.expand(MASKED_FORWARDS, -1, -1, -1)

    def plain() -> object:
        with torch.inference_mode():
            return [model(chunk) for chunk in masked.split(32)]

    return plain


def eigen_ops(activation: torch.Tensor) -> dict[str, Op]:
    """Eigen-CAM (through ``explain``) against full SVDs of the (h*w x K) matrix.

    Eigen-CAM runs on a model whose hooked layer passes ``activation`` through unchanged (an
    identity before a pooled linear head), so the time is the method's, plus two hooks and
    a head of one linear layer.
    """
    channels = activation.shape[1]
    model = torch.nn.Sequential(
        OrderedDict(
            layer=torch.nn.Identity(),
            pool=torch.nn.AdaptiveAvgPool2d(1),
            flatten=torch.nn.Flatten(),
            head=torch.nn.Linear(channels, 2),
        )
    ).eval()
    matrix = activation[0].reshape(channels, -1).T

    def numpy_full_svd() -> object:
        _, _, vt = np.linalg.svd(matrix.numpy(), full_matrices=True)
        return matrix.numpy() @ vt[0]

    def torch_full_svd() -> object:
        _, _, vt = torch.linalg.svd(matrix, full_matrices=True)
        return matrix @ vt[0]

    return {
        "eigencam": lambda: ng.explain(model, activation, method="eigencam", layer="layer"),
        "numpy-full-svd": numpy_full_svd,
        "torch-full-svd": torch_full_svd,
    }


def all_ops(small: bool = False) -> dict[str, Op]:
    """Every op on its full-size input, or on a small one (to load kernels and libraries)."""
    generator = torch.Generator().manual_seed(0)
    shape, activation = ((1, 3, 64, 64), (1, 512, 8, 8)) if small else (SHAPE, ACTIVATION)
    x = torch.randn(shape, generator=generator)
    features = torch.randn(activation, generator=generator).clamp_min(0)
    return {**model_ops(resnet18(), x), **eigen_ops(features)}


def time_ops(ops: dict[str, Op], names: list[str], rounds: int) -> dict[str, float]:
    """Median seconds per op over ``rounds`` interleaved rounds after one warm-up round."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds + 1):
        for name in names:
            start = time.perf_counter()
            ops[name]()
            if round_index:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def child_extra_memory(name: str) -> None:
    """In a fresh process: print the peak RSS growth (MB) of one op."""
    all_ops(small=True)[name]()
    ops = all_ops()
    Path("/proc/self/clear_refs").write_text("5")
    before = proc_status_kb("VmRSS")
    ops[name]()
    print((proc_status_kb("VmHWM") - before) / 1024)


def extra_memory(name: str) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, __file__, "--child", name]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def table(title: str, names: list[str], base: str, times: dict, memory: dict) -> str:
    lines = [f"\n{title}", f"{'op':<20}{'time s':>10}{'x ' + base:>22}{'extra MB':>10}{'x':>8}"]
    for name in names:
        t_ratio, m_ratio = times[name] / times[base], memory[name] / max(memory[base], 0.1)
        lines.append(
            f"{name:<20}{times[name]:>10.3f}{t_ratio:>22.2f}{memory[name]:>10.1f}{m_ratio:>8.2f}"
        )
    return "\n".join(lines)


def verdicts(times: dict[str, float], memory: dict[str, float]) -> list[str]:
    lines = []
    variants = {"scorecam": "Score-CAM", "scorecam-bf16": "Score-CAM, bfloat16 forwards (opt-in)"}
    for name, title in variants.items() if "torchcam-scorecam" in times else ():
        speedup = times["torchcam-scorecam"] / times[name]
        lower = memory[name] < memory["torchcam-scorecam"]
        met = "meets" if speedup >= 3 and lower else "MISSES"
        lines.append(
            f"{title}: {speedup:.2f}x faster than torchcam, peak memory "
            f"{'lower' if lower else 'NOT lower'} -> {met} the target (>= 3x, lower memory)"
        )
    overhead = times["scorecam"] / times["512-forwards"]
    lines.append(f"Score-CAM takes {overhead:.2f}x the time of 512 plain forwards")
    eigen = times["eigencam"]
    lines.append(
        f"Eigen-CAM at 96 x 96 x 512: {eigen:.3f} s ({'under' if eigen < 1 else 'OVER'} 1 s)"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slow-rounds", type=int, default=2)
    parser.add_argument("--child", metavar="OP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_extra_memory(args.child)
        return
    ops = all_ops()
    fast = ["forward", *GRADIENT, "ablationcam"]
    torchcam = ["torchcam-scorecam"] if "torchcam-scorecam" in ops else []
    slow = ["forward", "scorecam", "scorecam-bf16", *torchcam, "512-forwards"]
    eigen = ["eigencam", "numpy-full-svd", "torch-full-svd"]
    times = time_ops(ops, fast, args.rounds)
    times |= time_ops(ops, slow[1:], args.slow_rounds)
    times |= time_ops(ops, eigen, 1)
    memory = {name: extra_memory(name) for name in dict.fromkeys(fast + slow + eigen)}
    threads = torch.get_num_threads()
    print(
        table(f"ResNet-18 {SHAPE}, layer4, CPU threads={threads}", fast, "forward", times, memory)
    )
    print(table("Score-CAM (512 masked forwards)", slow, "forward", times, memory))
    print(table(f"Eigen-CAM, activation {ACTIVATION}", eigen, "eigencam", times, memory))
    print("\n" + "\n".join(verdicts(times, memory)), flush=True)


if __name__ == "__main__":
    main()
