"""Cost of Grad-CAM, the attention methods and LeGrad on ViT-S/16 against an inference forward.

Grad-CAM runs at the default layer (the input of the last block's attention). When
pytorch-grad-cam is importable (``.venv-timm``), its GradCAM runs on the same model and layer,
with the reshape_transform that drops the class token, in the same run.

8 x 3 x 224 x 224, timm's ``vit_small_patch16_224`` (random weights) when timm is importable,
else the same architecture written out in ``vit_small.py``; both attend with fused
``scaled_dot_product_attention``. Wall and CPU (process) times are medians of interleaved
rounds in this process (on a shared machine the CPU time is the steadier of the two); extra
peak memory is measured in a fresh child process per method (see ``bench_explain``).

    python benchmarks/bench_vit.py [--rounds 5]
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
from bench_explain import proc_status_kb
from vit_small import vit_small

import napari_gradcam as ng

SHAPE = (8, 3, 224, 224)
TARGETS = {"gradcam": 1.15, "rollout": 1.3, "legrad": 1.3}  # time ratio limit vs the forward
MEMORY_TARGETS = {"gradcam": 1.3}  # extra peak memory limit vs the forward's
METHODS = ("gradcam", "rollout", "attention", "transformer-attribution", "legrad")


def forward(model: torch.nn.Module, x: torch.Tensor, _targets: list[int]) -> None:
    with torch.inference_mode():
        model(x)


def method_op(method: str) -> Callable[[torch.nn.Module, torch.Tensor, list[int]], None]:
    def op(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> None:
        ng.explain(model, x, method=method, target=targets)

    return op


def reference_gradcam(model: torch.nn.Module, x: torch.Tensor, targets: list[int]) -> None:
    """pytorch-grad-cam's GradCAM at the same layer; tokens reshaped to 14 x 14 by hand."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
        side = round((tokens.shape[1] - 1) ** 0.5)
        return tokens[:, 1:].reshape(len(tokens), side, side, -1).permute(0, 3, 1, 2)

    layer = model.blocks[-1].norm1
    with GradCAM(model, [layer], reshape_transform=tokens_to_map) as cam:
        cam(x, [ClassifierOutputTarget(t) for t in targets])


def _has_pytorch_grad_cam() -> bool:
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        return False
    return True


OPS: dict[str, Callable] = {"forward": forward} | {name: method_op(name) for name in METHODS}
if _has_pytorch_grad_cam():
    OPS["pytorch-grad-cam"] = reference_gradcam


def time_ops(rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each op."""
    model, x = vit_small(), torch.randn(SHAPE)
    targets = [0] * SHAPE[0]
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in OPS}
    for round_index in range(rounds + 1):
        for name, op in OPS.items():
            wall, cpu = time.perf_counter(), time.process_time()
            op(model, x, targets)
            if round_index:  # round 0 warms up
                samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in samples.items()
    }


def child_extra_memory(op_name: str) -> None:
    """In a fresh process: print the peak RSS growth (MB) of one op on the full input."""
    model, x = vit_small(), torch.randn(SHAPE)
    OPS[op_name](model, torch.randn(1, *SHAPE[1:]), [0])  # load kernels and libraries first
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    before = proc_status_kb("VmRSS")
    OPS[op_name](model, x, [0] * SHAPE[0])
    print((proc_status_kb("VmHWM") - before) / 1024)


def extra_memory(op_name: str) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, __file__, "--child", op_name]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def report(
    times: dict[str, tuple[float, float]], memory: dict[str, float], source: str
) -> list[str]:
    lines = [f"\n8x3x224x224  (ViT-S/16 from {source}, CPU threads={torch.get_num_threads()})"]
    columns = ("wall s", "x fwd", "CPU s", "x fwd", "extra MB", "x fwd")
    lines.append(f"{'method':<24}" + "".join(f"{c:>10}" for c in columns))
    verdicts = []
    (wall_0, cpu_0), memory_0 = times["forward"], memory["forward"]
    for name, (wall, cpu) in times.items():
        ratios = (wall / wall_0, cpu / cpu_0)
        values = (wall, ratios[0], cpu, ratios[1], memory[name], memory[name] / memory_0)
        lines.append(f"{name:<24}" + "".join(f"{v:>10.2f}" for v in values))
        if name in TARGETS:
            verdict = "meets" if max(ratios) <= TARGETS[name] else "MISSES"
            verdicts.append(
                f"{name} {verdict} the target (wall and CPU time <= {TARGETS[name]}x the forward)"
            )
        if name in MEMORY_TARGETS:
            ok = memory[name] / memory_0 <= MEMORY_TARGETS[name]
            verdicts.append(
                f"{name} {'meets' if ok else 'MISSES'} the memory target "
                f"(extra peak <= {MEMORY_TARGETS[name]}x the forward's)"
            )
    return lines + verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", metavar="OP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_extra_memory(args.child)
        return
    times = time_ops(args.rounds)
    memory = {name: extra_memory(name) for name in OPS}
    source = type(vit_small()).__module__.split(".")[0]
    print("\n".join(report(times, memory, source)), flush=True)


if __name__ == "__main__":
    main()
