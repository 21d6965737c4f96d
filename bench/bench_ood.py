"""Benchmark: `clean + calibration + ood(msp, energy, maxlogit)` vs bare forward passes, and the
OOD metrics on 1e6 scores.

Prints, per workload, the median over repetitions of (harness time / bare time); the issue's
target is <= 1.15. Each workload runs twice: with the statistics off (`bootstrap = 0`,
`histogram_bins = 0`: the harness's own overhead, what the target measures) and with the
defaults (1000 bootstrap resamples per scorer and set for the 95 % intervals, 30-bin histograms),
whose extra cost is arithmetic on the scores that grows with resamples x samples, not with the
model. The harness runs the three tasks as the runner does, on a fresh context per
model (one shared clean forward pass, one forward pass per OOD set); the bare loop runs
`torch.inference_mode()` forward passes over the same ID and OOD tensors. OOD sets are built
once per process and reused across checkpoints, as in a run; their first build is timed apart.
Workloads: the digits zoo's architecture (5 models, 600 test images, three 600-image OOD sets as
in the digits suite) and a CIFAR-style PreActResNet-18 on 32x32 inputs. Then `ood_metrics` on
500k ID + 500k OOD scores (target < 1 s).

    python bench/bench_ood.py [--reps 5] [--resnet-images 256]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.data import EvalData
from benchmark.datasets import read_digits
from benchmark.tasks import TaskContext, get_task
from benchmark.tasks.ood import _build
from ood.metrics import bootstrap_ood_metrics, ood_metrics

SCORERS = ["msp", "energy", "maxlogit"]


STATISTICS = {"statistics off": {"bootstrap": 0, "histogram_bins": 0}, "defaults": {}}


def task_params(sets: dict, limit: int, **ood_params: int) -> list[tuple[str, dict]]:
    """The three tasks with their parameters (defaults overlaid, as a suite would resolve)."""
    ood = {**get_task("ood").defaults, "scorers": SCORERS, "sets": sets, "ood_limit": limit,
           **ood_params}
    return [("clean", get_task("clean").defaults),
            ("calibration", get_task("calibration").defaults), ("ood", ood)]


def harness(model: torch.nn.Module, data: EvalData, batch_size: int, tasks: list) -> None:
    """The tasks as the runner calls them, on a fresh context (its clean pass not cached)."""
    ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                      batch_size=batch_size, progress=False)
    for name, params in tasks:
        get_task(name).run(ctx, params)


def bare_loop(model: torch.nn.Module, tensors: list[torch.Tensor], batch_size: int) -> None:
    """The baseline: forward passes over the ID and OOD images, nothing else."""
    with torch.inference_mode():
        for images in tensors:
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size].float())


def measure(models: list[torch.nn.Module], data: EvalData, ood_images: list[torch.Tensor],
            batch_size: int, tasks: list, reps: int) -> tuple[float, float, float]:
    """Median harness seconds, median bare seconds, median per-rep ratio (over all models)."""
    tensors = [data.images, *ood_images]
    for model in models:  # warm-up: allocator, kernels, lazy imports
        harness(model, data, batch_size, tasks)
        bare_loop(model, tensors, batch_size)
    times: dict[str, list[float]] = {"harness": [], "bare": []}
    ratios = []
    for rep in range(reps):
        pair = {}
        for kind in (("harness", "bare") if rep % 2 == 0 else ("bare", "harness")):
            start = time.perf_counter()
            for model in models:
                if kind == "harness":
                    harness(model, data, batch_size, tasks)
                else:
                    bare_loop(model, tensors, batch_size)
            pair[kind] = time.perf_counter() - start
            times[kind].append(pair[kind])
        ratios.append(pair["harness"] / pair["bare"])
    return statistics.median(times["harness"]), statistics.median(times["bare"]), \
        statistics.median(ratios)


def build_sets(model: torch.nn.Module, data: EvalData, sets: dict, limit: int
               ) -> list[torch.Tensor]:
    """Build (and cache) the OOD sets once, timing it; return their images."""
    ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                      batch_size=256, progress=False)
    start = time.perf_counter()
    images = [_build(name, {"kind": spec} if isinstance(spec, str) else spec, ctx, "none",
                     limit, stream).made.images
              for stream, (name, spec) in enumerate(sets.items())]
    print(f"  first build of the OOD sets ({', '.join(sets)}): "
          f"{time.perf_counter() - start:.2f} s, then cached across checkpoints")
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--resnet-images", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    digits = read_digits(split="test")
    zoo = [NormalizedModel(build_arch("digits_cnn", num_classes=10), [0.3], [0.3]).eval()
           for _ in range(5)]
    sets = {"crops": {"kind": "natural_crops", "levels": 17}, "uniform": "uniform",
            "gaussian": "gaussian"}
    print("digits zoo (5 x digits_cnn, 600 ID images, 3 x 600 OOD images, batch 600):")
    ood_images = build_sets(zoo[0], digits, sets, 600)
    for label, extra in STATISTICS.items():
        h, b, r = measure(zoo, digits, ood_images, 600, task_params(sets, 600, **extra),
                          args.reps)
        print(f"  {label}: harness {h:.3f} s, bare {b:.3f} s, ratio {r:.3f}")

    n = args.resnet_images
    cifar = EvalData(name="random32", labels=np.arange(n) % 10, num_classes=10,
                     source="torch.rand", images=torch.rand(n, 3, 32, 32))
    resnet = NormalizedModel(build_arch("preactresnet18", num_classes=10), [0.5] * 3,
                             [0.25] * 3).eval()
    sets = {"uniform": "uniform", "gaussian": "gaussian"}
    print(f"PreActResNet-18 at 32x32 ({n} ID images, 2 x {n} OOD images, batch 128):")
    ood_images = build_sets(resnet, cifar, sets, n)
    for label, extra in STATISTICS.items():
        h, b, r = measure([resnet], cifar, ood_images, 128, task_params(sets, n, **extra),
                          max(3, args.reps // 2))
        print(f"  {label}: harness {h:.3f} s, bare {b:.3f} s, ratio {r:.3f}")

    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(1.0, 1.0, 500_000), rng.normal(0.0, 1.0, 500_000)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        ood_metrics(id_scores, ood_scores)
        runs.append(time.perf_counter() - start)
    print(f"ood_metrics (all six) on 1e6 scores: {statistics.median(runs):.3f} s (median of 3)")
    start = time.perf_counter()
    bootstrap_ood_metrics(id_scores[:10_000], [ood_scores[:10_000]], resamples=1000)
    print(f"bootstrap intervals (1000 resamples, 10k ID + 10k OOD): "
          f"{time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
