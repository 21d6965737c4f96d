"""Benchmark: the occlusion / affine / inbetween tasks' time vs the bare forward passes they need.

For each task the bare loop runs `torch.no_grad()` forward passes over perturbed copies of the
data built beforehand (untimed), exactly as many passes as the task makes: occlusion's distinct
hole sizes (the clean pass is shared with the `clean` task, so it is computed before timing, as
in a suite run) plus one single-image pass for the all-fill image; affine's eight sets;
inbetween's mixes x lambdas. The ratio (task / bare, median over interleaved repetitions) shows
what building the perturbations and the bookkeeping cost; the issue's target is <= 1.2.

    python bench/bench_perturbations.py [--reps 5] [--resnet-images 256] [--only digits|resnet]
                                        [--threads N]

On a shared, oversubscribed machine pass --threads 1: torch's 2-thread kernels then stall on
every small op (a 38k-element add took 48 ms instead of 0.05 ms), which inflates per-op costs
on both sides of the ratio and drowns the comparison in noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import benchmark.tasks.perturbations  # noqa: F401  (registers the tasks)
from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.data import EvalData
from benchmark.datasets import read_digits
from benchmark.tasks import TaskContext, get_task
from corruptions.affine import affine, affine_params
from corruptions.inbetween import cut_boxes, cutmix, mixup, partners
from corruptions.occlusion import hole_box, occlude


def perturbed_copies(task: str, data: EvalData, params: dict, mean: list[float]
                     ) -> list[torch.Tensor]:
    """The full-data tensors the task feeds its model (built with the library, untimed)."""
    images = data.images.float()
    n, _, height, width = images.shape
    if task == "occlusion":
        fill = mean if params["fill"] == "mean" else [0.0]
        copies, seen = [], set()
        for mode in params["modes"]:
            for frac in params["hole_fracs"]:
                top, bottom, left, right = box = hole_box(frac, height, width)
                empty = bottom == top or right == left
                full = (bottom - top, right - left) == (height, width)
                if empty or full or (mode, box) in seen:  # clean pass reused / all-fill image
                    continue
                seen.add((mode, box))
                copies.append(occlude(images, frac, mode, fill))
        copies.append(occlude(images[:1], 1.0, "center", fill))  # the one all-fill image
        return copies
    if task == "affine":
        sets = [("rotation", m) for m in params["rotations"]]
        sets += [("shear", m) for m in params["shears"]]
        sets += [("scale", m) for m in params["scales"]]
        return [affine(images, *affine_params(t, m, np.arange(n), 0)) for t, m in sets]
    partner = images[partners(data.labels, 0)]
    copies = [mixup(images, partner, lam) for lam in params["lams"]]
    boxes = [cut_boxes(np.arange(n), height, width, lam, 0) for lam in params["lams"]]
    distinct = [b for i, b in enumerate(boxes) if not any(np.array_equal(b, c)
                                                          for c in boxes[:i])]
    return copies + [cutmix(images, partner, b) for b in distinct]


def bare(model: torch.nn.Module, copies: list[torch.Tensor], batch_size: int) -> None:
    """The baseline: forward passes only, over tensors already perturbed."""
    with torch.no_grad():
        for copy in copies:
            for start in range(0, len(copy), batch_size):
                model(copy[start:start + batch_size])


def harness(ctx: TaskContext, task: str) -> None:
    """The task as the runner calls it (the clean forward pass already memoized)."""
    definition = get_task(task)
    definition.run(ctx, definition.defaults)


def measure(models: list[torch.nn.Module], data: EvalData, task: str, batch_size: int,
            reps: int, mean: list[float]) -> tuple[float, float, float, int]:
    """Median task seconds, median bare seconds, median per-rep ratio, forward passes."""
    params = get_task(task).defaults
    copies = perturbed_copies(task, data, params, mean)
    contexts = []
    for model in models:
        ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                          batch_size=batch_size, progress=False, meta={"mean": mean})
        ctx.clean_logits()
        contexts.append(ctx)
    for ctx in contexts:  # warm-up
        harness(ctx, task)
        bare(ctx.model, copies, batch_size)
    task_times, bare_times, ratios = [], [], []
    for rep in range(reps):
        pair = {}
        for kind in (("task", "bare") if rep % 2 == 0 else ("bare", "task")):
            start = time.perf_counter()
            for ctx in contexts:
                if kind == "task":
                    harness(ctx, task)
                else:
                    bare(ctx.model, copies, batch_size)
            pair[kind] = time.perf_counter() - start
        task_times.append(pair["task"])
        bare_times.append(pair["bare"])
        ratios.append(pair["task"] / pair["bare"])
    return (statistics.median(task_times), statistics.median(bare_times),
            statistics.median(ratios), len(copies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--resnet-images", type=int, default=256)
    parser.add_argument("--only", choices=["digits", "resnet"], help="run one workload")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    if args.only != "resnet":
        bench_digits(args.reps)
    if args.only != "digits":
        bench_resnet(args.reps, args.resnet_images)


def bench_digits(reps: int) -> None:
    """The demo zoo's workload: 5 digits CNNs, 600 test images, one batch."""
    digits = read_digits(split="test")
    zoo = [NormalizedModel(build_arch("digits_cnn", num_classes=10), [0.3], [0.3]).eval()
           for _ in range(5)]
    for task in ("occlusion", "affine", "inbetween"):
        t, b, r, passes = measure(zoo, digits, task, 600, reps, [0.3])
        print(f"{task:9s} digits zoo (5 x digits_cnn, 600 images, {passes} passes): "
              f"task {t:.3f} s, bare {b:.3f} s, ratio {r:.3f}")


def bench_resnet(reps: int, n: int) -> None:
    """A CIFAR-style network: PreActResNet-18 on n random 32x32 images, batch 128."""
    cifar = EvalData(name="random32", labels=np.arange(n) % 10, num_classes=10,
                     source="torch.rand", images=torch.rand(n, 3, 32, 32))
    resnet = NormalizedModel(build_arch("preactresnet18", num_classes=10), [0.5] * 3,
                             [0.25] * 3).eval()
    for task in ("occlusion", "affine", "inbetween"):
        t, b, r, passes = measure([resnet], cifar, task, 128, max(3, reps // 2),
                                  [0.5] * 3)
        print(f"{task:9s} PreActResNet-18 32x32 ({n} images, {passes} passes): "
              f"task {t:.3f} s, bare {b:.3f} s, ratio {r:.3f}")


if __name__ == "__main__":
    main()
