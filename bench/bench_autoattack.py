"""Benchmark: the `autoattack` task vs pyautoattack called directly on the same model and points.

For each checkpoint of the committed digits zoo (.ci/zoo), the same `--images` test images (a
seeded stratified subset), AutoAttack's standard version at one Linf eps, one batch size and
seed: the wall time of the whole `autoattack` task (its clean pass, the model-table checks,
every stage, the records and metrics) over the wall time of
`AutoAttack(...).run_standard_evaluation` on those points. The issue's target is <= 1.05. Both
runs are timed in this process, alternately, and their robust points are checked to agree.

    python bench/bench_autoattack.py [--images 200] [--eps 0.125] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from pyautoattack import AutoAttack

from benchmark.checkpoints import load_model, make_ref
from benchmark.data import stratified_subset
from benchmark.datasets import read_digits
from benchmark.suites import load_suite
from benchmark.tasks import TaskContext, get_task, resolve_params

ZOO = Path(__file__).resolve().parent.parent / ".ci" / "zoo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--eps", type=float, default=0.125)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoints", default="erm,mixup")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suite = load_suite("digits")
    data = read_digits(split="test")
    data = data.subset(stratified_subset(data.labels, args.images, 0))
    x = torch.cat([images for images, _ in data.batches(args.batch_size, torch.device("cpu"))])
    y = torch.from_numpy(data.labels)
    task = get_task("autoattack")
    params = resolve_params(task, {"eps": [args.eps]}, "bench")
    ratios = []
    for name in args.checkpoints.split(","):
        path = ZOO / f"{name}.safetensors"
        model = load_model(make_ref(path, ZOO, {}, suite.model_defaults)).model.eval()
        ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                          batch_size=args.batch_size, progress=False)
        start = time.perf_counter()
        records, _ = task.run(ctx, params)
        task_s = time.perf_counter() - start
        start = time.perf_counter()
        engine = AutoAttack(model, norm="Linf", eps=args.eps, version="standard", seed=0)
        engine.verbose = False
        _, y_adv = engine.run_standard_evaluation(x, y, batch_size=args.batch_size)
        direct_s = time.perf_counter() - start
        ours = records.one(eps=args.eps, space="pixel", norm="linf",
                           ensemble="standard")["correct"]
        same = bool(np.array_equal(ours, (y_adv == y).numpy()))
        ratios.append(task_s / direct_s)
        print(f"{name}: task {task_s:.1f} s, pyautoattack {direct_s:.1f} s, ratio "
              f"{task_s / direct_s:.3f}; robust error {100 * (1 - ours.mean()):.1f} %, "
              f"same robust points: {same}")
    print(f"autoattack task / pyautoattack: mean ratio {np.mean(ratios):.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
