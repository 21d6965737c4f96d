"""Benchmark: the whole digits gate run through `--executor ray` vs `--executor local`.

Evaluates the committed digits zoo (.ci/zoo, 5 checkpoints) on the digits suite at `--limit`
images, one torch thread per process, three ways in this process, one after another: the
local executor, Ray with 1 worker (its overhead: ratio to local) and Ray with 2 workers
(ratio to local). Each Ray run starts its own local Ray (`ray.init(num_cpus=N)`), whose start
is timed apart and not counted. Every run writes to a fresh folder; the results must be equal.

    python bench/bench_executors.py [--limit 200] [--shard-size 0]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray

from benchmark.cli import main

ROOT = Path(__file__).resolve().parent.parent


def evaluate(out: Path, data: Path, limit: int, *extra: str) -> float:
    """Seconds one `rubench evaluate` of the zoo takes; it must succeed."""
    start = time.perf_counter()
    code = main(["evaluate", str(ROOT / ".ci" / "zoo"), "--suite", "digits", "--limit",
                 str(limit), "--threads", "1", "--no-progress", "--data-root", str(data),
                 "--out", str(out), *extra])
    if code != 0:
        raise SystemExit(f"the run into {out} failed ({code})")
    return time.perf_counter() - start


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--shard-size", default="0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        evaluate(tmp / "warm", data, 20)  # makes digits-C once, warms the imports
        shutil.rmtree(tmp / "warm")
        seconds = {"local": evaluate(tmp / "local", data, args.limit)}
        for workers in (1, 2):
            start = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            started = time.perf_counter() - start
            try:
                seconds[f"ray x{workers}"] = evaluate(
                    tmp / f"ray{workers}", data, args.limit, "--executor", "ray",
                    "--shard-size", args.shard_size)
            finally:
                ray.shutdown()
            print(f"(Ray start with {workers} CPU(s): {started:.1f} s, not counted)")
            pd.testing.assert_frame_equal(pd.read_csv(tmp / f"ray{workers}" / "results.csv"),
                                          pd.read_csv(tmp / "local" / "results.csv"))
        print(f"digits zoo, 5 checkpoints, {args.limit} images, shard size {args.shard_size}; "
              "results.csv identical in all runs")
        for name, value in seconds.items():
            print(f"{name:>9}: {value:7.1f} s   ratio to local {value / seconds['local']:.2f}")


if __name__ == "__main__":
    main_bench()
