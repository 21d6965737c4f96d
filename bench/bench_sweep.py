"""Benchmark: a 5-eps PGD-10 Linf sweep, nested with early stop vs the naive loop.

The naive loop is what the attack tasks did before issue #14: full PGD-10 (seeded per-sample
random start, step 2.5 * eps / 10) on every point at every eps, then one evaluation pass. The
nested, early-stopped sweep is the generic `attack` task running `pgd` (steps 10, `early_stop`
true, `sweep` "nested": clean mistakes never attacked, a point broken at a smaller eps not
attacked at a larger one, a point's attack ended at its first misclassified iterate: the
default, `top5 = false`; with `top5 = true` a point is broken only once out of the top-5). Beside
them, the same task with `sweep = "independent"`, `early_stop = false` (only clean mistakes
skipped), and the `pgd` task (which adds the FGSM comparison run) both ways. Every row prints
its median wall time over `--reps` (interleaved, so drift hits all alike), its median ratio to
the naive loop's time, the ratio of the images the model is run on (forward passes, each
attack step's backward included with its forward: a measure free of the machine's load) and
its top-1 robust error (%) per eps: the nested one is >= the naive one at every eps on the
same seed (checked). The issue's target: nested + early stop <= 0.5 x the naive loop.
The saving is bounded by the points still robust at the small budgets: a grid whose smallest
eps break few points saves little there.

Workloads:
- the digits zoo committed in .ci/zoo (digits_cnn; loaded the way the runner loads it), on a
  seeded class-stratified 300 of the digits test split (the suite's `limit`), one batch,
  eps 1/64, 1/32, 1/16, 1/8, 1/4 (a digits grey level is 1/16);
- PreActResNet-18 at 32x32, trained for `--train-seconds` (SGD, batches of 32) on the digits
  train split upsampled to 3x32x32, on 128 upsampled test digits, one batch, eps 1, 2, 4, 8,
  16 / 255 (`--resnet-grids cifar`) and, since upsampled digits keep the digits' grey levels,
  the digits grid too (`digits`); `--resnet-reps` (default 1, no warm-up: one naive sweep is
  50 passes of 128 images through a ResNet-18, minutes on 2 CPU cores) of the naive loop and
  the nested sweep only, unless `--resnet-all`.

    python bench/bench_sweep.py [--reps 3] [--threads N] [--train-seconds 60] [--resnet-reps 1]
                                [--resnet-grids cifar,digits]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import benchmark.tasks  # noqa: F401  (registers the tasks)
from attacks.gradient import pgd
from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel, discover, load_model, make_ref
from benchmark.data import EvalData, stratified_subset
from benchmark.datasets import read_digits
from benchmark.tasks import TaskContext, get_task, resolve_params

ZOO = Path(__file__).resolve().parent.parent / ".ci" / "zoo"
DIGITS_EPS = [1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4]
CIFAR_EPS = [k / 255 for k in (1, 2, 4, 8, 16)]
STEPS = 10

Errors = dict[float, float]


def naive(model: torch.nn.Module, data: EvalData, eps_list: list[float], batch_size: int
          ) -> Errors:
    """Full PGD-10 on every point at every eps; top-1 error (%) with clean mistakes counted."""
    labels = torch.from_numpy(data.labels)
    wrong = {eps: 0 for eps in eps_list}
    for start in range(0, len(data), batch_size):
        x = data.images[start:start + batch_size].float()
        y = labels[start:start + batch_size]
        index = torch.arange(start, start + len(y))
        with torch.no_grad():
            clean_wrong = model(x).argmax(1) != y
        for eps in eps_list:
            x_adv = pgd(model, x, y, eps, steps=STEPS, seed=0, index=index)
            with torch.no_grad():
                wrong[eps] += int((clean_wrong | (model(x_adv).argmax(1) != y)).sum())
    return {eps: 100 * count / len(data) for eps, count in wrong.items()}


def task_run(name: str, params: dict, model: torch.nn.Module, data: EvalData,
             batch_size: int, clean: torch.Tensor) -> Callable[[], Errors]:
    """A zero-argument callable running task `name` once; returns its top1_err per eps."""
    task = get_task(name)
    params = resolve_params(task, params, "bench")

    def go() -> Errors:
        ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                          batch_size=batch_size, progress=False)
        ctx._clean_logits = clean  # the runner shares one clean pass among all tasks
        _, metrics = task.run(ctx, params)
        return {m.conditions["eps"]: m.value for m in metrics if m.metric == "top1_err"}

    return go


def workloads(model: torch.nn.Module, data: EvalData, eps: list[float], batch_size: int,
              every: bool = True) -> dict[str, Callable[[], Errors]]:
    """name -> callable running that sweep once, returning its error per eps (`every`: also
    the independent full runs of the tasks and the pgd task)."""
    with torch.no_grad():
        clean = model(data.images.float())
    fast = {"sweep": "nested", "early_stop": True}
    full = {"sweep": "independent", "early_stop": False}

    def attack(how: dict) -> Callable[[], Errors]:
        return task_run("attack", {"attack": "pgd", "eps": eps, "sweep": how["sweep"],
                                   "options": {"steps": STEPS,
                                               "early_stop": how["early_stop"]}},
                        model, data, batch_size, clean)

    runs = {"naive loop": lambda: naive(model, data, eps, batch_size),
            "attack, nested + early stop": attack(fast)}
    if every:
        runs.update({
            "attack, independent, full": attack(full),
            "pgd task, nested + early stop": task_run(
                "pgd", {"eps": eps, "steps": STEPS, **fast}, model, data, batch_size, clean),
            "pgd task, independent, full": task_run(
                "pgd", {"eps": eps, "steps": STEPS, **full}, model, data, batch_size, clean),
        })
    return runs


Result = tuple[float, float, float, Errors]  # seconds, x naive (time), x naive (passes), errors


def measure(model: torch.nn.Module, runs: dict[str, Callable[[], Errors]], reps: int,
            warmup: bool = True) -> dict[str, Result]:
    """name -> (median seconds, median time ratio to the naive loop of the same repetition,
    ratio of the images the model was run on to the naive loop's, errors per eps). The first
    repetition (or a warm-up round) gives the errors and counts the image passes."""
    passes = [0]
    hook = model.register_forward_hook(
        lambda _m, _i, out: passes.__setitem__(0, passes[0] + len(out)))
    times: dict[str, list[float]] = {name: [] for name in runs}
    counts, errors = {}, {}
    names = list(runs)
    try:
        for rep in range(-1 if warmup else 0, reps):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                passes[0], start = 0, time.perf_counter()
                result = runs[name]()
                if rep >= 0:
                    times[name].append(time.perf_counter() - start)
                errors.setdefault(name, result)
                counts.setdefault(name, passes[0])
    finally:
        hook.remove()
    naive_time = times["naive loop"]
    return {name: (statistics.median(t),
                   statistics.median(a / b for a, b in zip(t, naive_time, strict=True)),
                   counts[name] / counts["naive loop"], errors[name])
            for name, t in times.items()}


def report(title: str, eps: list[float], results: dict[str, Result], scale: float, unit: str
           ) -> None:
    print(title)
    header = " ".join(f"{e * scale:>6.4g}" for e in eps)
    print(f"  {'':<31} {'seconds':>8} {'x naive':>8} {'passes':>7}   "
          f"top-1 error % at eps {unit}: {header}")
    for name, (seconds, ratio, passes, errors) in results.items():
        row = " ".join(f"{errors[e]:6.1f}" for e in eps)
        print(f"  {name:<31} {seconds:8.3f} {ratio:8.3f} {passes:7.3f}   "
              f"{'':>{24 + len(unit)}}{row}", flush=True)
    naive_errors = results["naive loop"][3]
    for name, (*_, errors) in results.items():
        if "nested" in name:
            assert all(errors[e] >= naive_errors[e] - 1e-9 for e in eps), (name, errors)


def digits_zoo(reps: int) -> list[float]:
    """The committed zoo: per checkpoint, the ratio of nested + early stop to the naive loop."""
    test = read_digits(split="test")
    data = test.subset(stratified_subset(test.labels, 300, 0))
    ratios = []
    for path in discover(ZOO):
        ref = make_ref(path, ZOO, {}, {"num_classes": 10, "input_size": [8, 8]})
        model = load_model(ref).model.eval()
        results = measure(model, workloads(model, data, DIGITS_EPS, len(data)), reps)
        report(f"digits zoo {ref.name} (digits_cnn), {len(data)} test images, one batch:",
               DIGITS_EPS, results, 64, "(x 1/64)")
        ratios.append(results["attack, nested + early stop"][:3])
    return ratios


def upsampled(data: EvalData) -> EvalData:
    """Digits as 3x32x32 images (bilinear upsampling, the grey channel repeated)."""
    images = F.interpolate(data.images.float(), size=(32, 32), mode="bilinear",
                           align_corners=False).clamp(0, 1).repeat(1, 3, 1, 1)
    return EvalData(name="digits32", labels=data.labels, num_classes=10,
                    source="digits upsampled to 3x32x32", images=images)


def trained_resnet(seconds: float) -> torch.nn.Module:
    """PreActResNet-18 trained on the upsampled digits train split for about `seconds`."""
    torch.manual_seed(0)
    train = upsampled(read_digits(split="train"))
    net = build_arch("preactresnet18", num_classes=10)
    model = NormalizedModel(net, [0.3] * 3, [0.38] * 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    labels = torch.from_numpy(train.labels)
    generator = torch.Generator().manual_seed(0)
    start, steps = time.perf_counter(), 0
    model.train()
    while time.perf_counter() - start < seconds:
        batch = torch.randint(0, len(labels), (32,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(train.images[batch]), labels[batch]).backward()
        optimizer.step()
        steps += 1
    print(f"PreActResNet-18: {steps} SGD steps of 32 upsampled digits in {seconds:g} s")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--train-seconds", type=float, default=60.0)
    parser.add_argument("--resnet-images", type=int, default=128)
    parser.add_argument("--resnet-reps", type=int, default=1)
    parser.add_argument("--resnet-grids", default="cifar,digits")
    parser.add_argument("--resnet-all", action="store_true",
                        help="also time the tasks' independent full runs and the pgd task")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; PGD-10 Linf, "
          "step 2.5 * eps / 10, seed 0")

    ratios = digits_zoo(args.reps)

    model = trained_resnet(args.train_seconds)
    test = read_digits(split="test")
    data = upsampled(test.subset(stratified_subset(test.labels, args.resnet_images, 0)))
    with torch.no_grad():
        clean_err = 100 * (model(data.images).argmax(1).numpy() != data.labels).mean()
    print(f"PreActResNet-18 clean top-1 error on the {len(data)} test images: {clean_err:.1f} %")
    grids = {"cifar": (CIFAR_EPS, 255, "(x 1/255)"), "digits": (DIGITS_EPS, 64, "(x 1/64)")}
    resnet = {}
    for grid in args.resnet_grids.split(","):
        eps, scale, unit = grids[grid]
        results = measure(model, workloads(model, data, eps, len(data), args.resnet_all),
                          args.resnet_reps, warmup=False)
        report(f"PreActResNet-18 at 32x32, {len(data)} upsampled test digits, one batch, "
               f"{grid} grid:", eps, results, scale, unit)
        resnet[grid] = results["attack, nested + early stop"]
    print("nested + early stop / naive loop, generic attack task running pgd (target <= 0.5):")
    print("  time ratio (passes ratio)")
    print(f"  digits zoo: {', '.join(f'{r[1]:.3f} ({r[2]:.3f})' for r in ratios)}; median "
          f"{statistics.median(r[1] for r in ratios):.3f}")
    for grid, result in resnet.items():
        print(f"  PreActResNet-18, {grid} grid: {result[1]:.3f} ({result[2]:.3f})")


if __name__ == "__main__":
    main()
