"""Cost of explain() against a plain inference forward (and captum / torchcam when installed).

Times are medians of interleaved rounds in this one process; extra peak memory is measured in
a fresh child process per (case, method) with glibc told to return freed blocks at once, so
the peak resident-set growth over the call (Linux VmHWM after a reset) tracks live tensors.
Ratios, not absolute numbers, are the result.

    python benchmarks/bench_explain.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from resnet18 import resnet18

import napari_gradcam as ng

CASES = {"8x3x224x224": (8, 3, 224, 224), "1x3x1024x1024": (1, 3, 1024, 1024)}
TARGETS = {"explain": (1.2, 2.0)}  # (time ratio, extra-memory ratio) limits vs the forward


def forward(model: torch.nn.Module, x: torch.Tensor, _targets: list[int]) -> None:
    with torch.inference_mode():
        model(x)


def explain(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> None:
    ng.explain(model, x, layer="layer4", target=targets)


def captum_layer_gradcam(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> None:
    from captum.attr import LayerGradCam

    LayerGradCam(model, model.layer4).attribute(x, target=targets, relu_attributions=True)


def torchcam_gradcam(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> None:
    from torchcam.methods import GradCAM

    extractor = GradCAM(model, "layer4", input_shape=tuple(x.shape[1:]))
    try:
        extractor(targets, model(x))
    finally:
        extractor.remove_hooks()
    model.zero_grad(set_to_none=True)


def available_ops() -> dict[str, Callable]:
    ops = {"forward": forward, "explain": explain}
    for name, module, op in (
        ("captum", "captum", captum_layer_gradcam),
        ("torchcam", "torchcam", torchcam_gradcam),
    ):
        try:
            __import__(module)
        except ImportError:
            continue
        ops[name] = op
    return ops


def top_classes(model: torch.nn.Module, x: torch.Tensor) -> list[int]:
    with torch.inference_mode():
        return model(x).argmax(1).tolist()


def time_ops(shape: tuple[int, ...], ops: dict[str, Callable], rounds: int) -> dict[str, float]:
    model, x = resnet18(), torch.randn(shape)
    targets = top_classes(model, x)
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for round_index in range(rounds + 1):
        for name, op in ops.items():
            start = time.perf_counter()
            op(model, x, targets)
            if round_index:  # round 0 warms up
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def child_extra_memory(case: str, op_name: str) -> None:
    """In a fresh process: print the peak RSS growth (MB) of one op on the full input."""
    model, x = resnet18(), torch.randn(CASES[case])
    op = available_ops()[op_name]
    op(model, torch.randn(1, 3, 64, 64), [0])  # load kernels and libraries first
    targets = [0] * x.shape[0]
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    before = proc_status_kb("VmRSS")
    op(model, x, targets)
    print((proc_status_kb("VmHWM") - before) / 1024)


def proc_status_kb(field: str) -> int:
    """A memory field of /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def extra_memory(case: str, op_name: str) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, __file__, "--child", case, op_name]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def report(case: str, times: dict[str, float], memory: dict[str, float]) -> list[str]:
    threads = torch.get_num_threads()
    lines = [f"\n{case}  (ResNet-18, Grad-CAM at layer4, CPU threads={threads})"]
    misses = []
    lines.append(f"{'method':<10}{'time s':>9}{'x forward':>11}{'extra MB':>10}{'x forward':>11}")
    for name in times:
        t_ratio = times[name] / times["forward"]
        m_ratio = memory[name] / memory["forward"]
        lines.append(
            f"{name:<10}{times[name]:>9.3f}{t_ratio:>11.2f}{memory[name]:>10.1f}{m_ratio:>11.2f}"
        )
        if name in TARGETS:
            t_max, m_max = TARGETS[name]
            verdict = "meets" if t_ratio <= t_max and m_ratio <= m_max else "MISSES"
            misses.append(f"{name} {verdict} the targets (time <= {t_max}x, memory <= {m_max}x)")
    return lines + misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "OP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_extra_memory(*args.child)
        return
    ops = available_ops()
    for case, shape in CASES.items():
        times = time_ops(shape, ops, args.rounds)
        memory = {name: extra_memory(case, name) for name in ops}
        print("\n".join(report(case, times, memory)), flush=True)


if __name__ == "__main__":
    main()
