"""Benchmark: PGD-10 (Linf, 8/255) in the harness and in foolbox vs a bare torch loop.

Prints, per workload, the median over repetitions of (time / bare-loop time) for:
- `attacks.pgd`: the harness's attack as the `pgd` task calls it (seeded per-sample random start,
  foolbox-order projection) — the issue's target is <= 1.15;
- the whole `pgd` task at one eps (the attack plus what the task adds: the clean gradient shared
  by FGSM and the zero-gradient check, one FGSM and two evaluation forward passes, the
  randomized-output check and the budget checks);
- foolbox 3.3.4's `LinfPGD` with the same steps, absolute step and random start.
The bare loop does the same 10 forward + backward passes (cross-entropy, sign step, clip to the
ball and to [0, 1], a torch.rand random start) and nothing else. Workloads: the digits zoo's
architecture (digits_cnn, 600 test images, one batch) and PreActResNet-18 at 32x32. All timings
run in this process on the same model objects and tensors, interleaved so drift hits all alike.

    python bench/bench_attacks.py [--reps 5] [--resnet-images 256] [--threads N]

On a shared, oversubscribed machine `--threads 1` gives far steadier ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import foolbox as fb
import numpy as np
import torch
import torch.nn.functional as F

import benchmark.tasks.attacks  # noqa: F401  (registers the attack tasks)
from attacks.gradient import pgd
from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.data import EvalData
from benchmark.datasets import read_digits
from benchmark.tasks import TaskContext, get_task

EPS, STEPS = 8 / 255, 10
STEP = 2.5 * EPS / STEPS


def bare_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The baseline: random start, then 10 x (forward, backward, sign step, clip)."""
    x_adv = (x + EPS * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    for _ in range(STEPS):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + STEP * grad.sign(), x - EPS), x + EPS)
        x_adv = x_adv.clamp(0, 1)
    return x_adv


def batched(fn: Callable, model: torch.nn.Module, data: EvalData, batch_size: int) -> None:
    """Run an attack `fn(model, x, y, index)` batch by batch over the in-memory data."""
    labels = torch.from_numpy(data.labels)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        fn(model, data.images[start:stop], labels[start:stop], torch.arange(start, stop))


def workloads(model: torch.nn.Module, data: EvalData, batch_size: int) -> dict[str, Callable]:
    """name -> zero-argument callable running that workload once over the data."""
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    foolbox_pgd = fb.attacks.LinfPGD(steps=STEPS, abs_stepsize=STEP, random_start=True)
    task = get_task("pgd")
    params = {**task.defaults, "eps": [EPS], "steps": STEPS}

    def run_task() -> None:
        ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                          batch_size=batch_size, progress=False)
        ctx._clean_logits = clean  # the runner shares one clean pass among all tasks
        task.run(ctx, params)

    with torch.no_grad():
        clean = model(data.images)
    return {
        "bare": lambda: batched(lambda m, x, y, i: bare_loop(m, x, y), model, data, batch_size),
        "attacks.pgd": lambda: batched(
            lambda m, x, y, i: pgd(m, x, y, EPS, steps=STEPS, seed=0, index=i), model, data,
            batch_size),
        "pgd task": run_task,
        "foolbox LinfPGD": lambda: batched(
            lambda m, x, y, i: foolbox_pgd(fmodel, x, y, epsilons=EPS), model, data,
            batch_size),
    }


def measure(model: torch.nn.Module, data: EvalData, batch_size: int, reps: int
            ) -> dict[str, tuple[float, float]]:
    """name -> (median seconds, median ratio to the bare loop of the same repetition)."""
    runs = workloads(model, data, batch_size)
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t),
                   statistics.median(a / b for a, b in zip(t, times["bare"], strict=True)))
            for name, t in times.items()}


def report(title: str, results: dict[str, tuple[float, float]]) -> None:
    print(title)
    for name, (seconds, ratio) in results.items():
        print(f"  {name:<16} {seconds:8.3f} s   x{ratio:.3f} of the bare loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--resnet-images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, foolbox {fb.__version__}, "
          f"{torch.get_num_threads()} threads, CPU; PGD-10 Linf eps 8/255, step 2.5 * eps / 10")

    digits = read_digits(split="test")
    digits_model = NormalizedModel(build_arch("digits_cnn", num_classes=10), [0.3], [0.38]).eval()
    report("digits_cnn, 600 digits test images, batch 600:",
           measure(digits_model, digits, 600, args.reps))

    n = args.resnet_images
    cifar = EvalData(name="random32", labels=np.arange(n) % 10, num_classes=10,
                     source="torch.rand", images=torch.rand(n, 3, 32, 32))
    resnet = NormalizedModel(build_arch("preactresnet18", num_classes=10), [0.5] * 3,
                             [0.25] * 3).eval()
    report(f"PreActResNet-18 at 32x32, {n} images, batch 128:",
           measure(resnet, cifar, 128, max(3, args.reps // 2)))


if __name__ == "__main__":
    main()
