"""Benchmark: the `clean` task's time vs a bare `torch.no_grad()` loop over the same tensors/model.

Prints, per workload, the median over repetitions of (harness time / bare-loop time); the issue's
target is <= 1.10. Workloads: the digits zoo's architecture (5 models, 600 test images) and a
CIFAR-style ResNet-18 (PreActResNet-18) on 32x32 inputs. Both timings run in this process on
the same model objects and the same in-memory tensors, interleaved so drift hits both alike.

    python bench/bench_clean.py [--reps 5] [--resnet-images 256] [--threads 1]
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


def bare_loop(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """The baseline: forward passes only, no bookkeeping."""
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])


def harness(model: torch.nn.Module, data: EvalData, batch_size: int) -> None:
    """The `clean` task as the runner calls it (fresh context: its forward pass is not cached)."""
    ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                      batch_size=batch_size, progress=False)
    task = get_task("clean")
    task.run(ctx, task.defaults)


def measure(models: list[torch.nn.Module], data: EvalData, batch_size: int, reps: int
            ) -> tuple[float, float, float]:
    """Median harness seconds, median bare seconds, median per-rep ratio (over all models)."""
    harness_times, bare_times, ratios = [], [], []
    for model in models:  # warm-up: allocator, kernels, lazy imports
        harness(model, data, batch_size)
        bare_loop(model, data.images, batch_size)
    for rep in range(reps):
        pair = {}
        for kind in (("harness", "bare") if rep % 2 == 0 else ("bare", "harness")):
            start = time.perf_counter()
            for model in models:
                if kind == "harness":
                    harness(model, data, batch_size)
                else:
                    bare_loop(model, data.images, batch_size)
            pair[kind] = time.perf_counter() - start
        harness_times.append(pair["harness"])
        bare_times.append(pair["bare"])
        ratios.append(pair["harness"] / pair["bare"])
    return statistics.median(harness_times), statistics.median(bare_times), \
        statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--resnet-images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (1 gives stable figures on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    digits = read_digits(split="test")
    zoo = [NormalizedModel(build_arch("digits_cnn", num_classes=10), [0.3], [0.3]).eval()
           for _ in range(5)]
    for batch_size in (600, 64):
        h, b, r = measure(zoo, digits, batch_size, args.reps)
        print(f"digits zoo (5 x digits_cnn, 600 images, batch {batch_size}): harness {h:.4f} s, "
              f"bare {b:.4f} s, ratio {r:.3f}")

    n = args.resnet_images
    images = torch.rand(n, 3, 32, 32)
    cifar = EvalData(name="random32", labels=np.arange(n) % 10, num_classes=10,
                     source="torch.rand", images=images)
    resnet = NormalizedModel(build_arch("preactresnet18", num_classes=10), [0.5] * 3,
                             [0.25] * 3).eval()
    h, b, r = measure([resnet], cifar, 128, max(3, args.reps // 2))
    print(f"PreActResNet-18 at 32x32 ({n} images, batch 128): harness {h:.3f} s, bare {b:.3f} s, "
          f"ratio {r:.3f}")


if __name__ == "__main__":
    main()
