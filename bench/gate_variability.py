"""Benchmark: which gate numbers move when only the CPU changes, and by how much.

Evaluates the committed CI zoo (`.ci/zoo`) on the CI gate's subset once per variant, each in a
fresh process with its own generated digits-C, and prints per metric the largest absolute change
against the reference variant (one thread, every fast path on). The variants stand in for
another CPU: two threads (another reduction order), oneDNN off, and torch / MKL / OpenBLAS
restricted to generic or older instruction sets. `.ci/gate.toml`'s tolerances cover these figures.

    python bench/gate_variability.py [--limit 200] [--work DIR] [--tasks clean,calibration]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / ".ci" / "zoo"
KEY = ["checkpoint", "task", "metric"]

# name -> (environment overrides, torch threads, oneDNN enabled)
VARIANTS: dict[str, tuple[dict[str, str], int, bool]] = {
    "reference": ({}, 1, True),
    "threads_2": ({}, 2, True),
    "onednn_off": ({}, 1, False),
    "generic_isa": ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                     "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Nehalem"}, 1, True),
}

PRELUDE = ("import sys, torch; torch.backends.mkldnn.enabled = {mkldnn}; "
           "from benchmark.cli import main; sys.exit(main(sys.argv[1:]))")


def evaluate(name: str, work: Path, limit: int, tasks: str | None) -> pd.DataFrame:
    """One gate evaluation under variant `name`, in its own process; its results.csv."""
    env_overrides, threads, mkldnn = VARIANTS[name]
    out = work / name
    args = [sys.executable, "-c", PRELUDE.format(mkldnn=mkldnn), "evaluate", str(ZOO),
            "--suite", "digits", "--data-root", str(out / "data"), "--out", str(out),
            "--limit", str(limit), "--threads", str(threads), "--no-progress"]
    if tasks:
        args += ["--tasks", tasks]
    subprocess.run(args, check=True, env={**os.environ, **env_overrides}, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return pd.read_csv(out / "results.csv")


def movement(reference: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """Per (task, metric): rows compared, rows that moved, the largest |change|."""
    conditions = [c for c in reference.columns if c not in other.columns]
    if conditions:
        raise SystemExit(f"condition columns differ between variants: {conditions}")
    columns = [c for c in reference.columns
               if c not in ("value", "ci_low", "ci_high", "n", "higher_is_better",
                            "checkpoint_sha256", "config_hash", "device", "git_hash",
                            "torch_version", "rubench_version")]
    merged = reference.merge(other, on=columns, suffixes=("", "_other"), how="outer",
                             indicator=True)
    unmatched = merged[merged["_merge"] != "both"]
    if len(unmatched):
        raise SystemExit(f"{len(unmatched)} rows exist in only one variant")
    merged["delta"] = (merged["value_other"] - merged["value"]).abs()
    return merged.groupby(["task", "metric"]).agg(
        rows=("delta", "size"), moved=("delta", lambda d: int((d > 0).sum())),
        max_abs_delta=("delta", "max"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--tasks", default=None)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="rubench-gate-"))
    results = {name: evaluate(name, work, args.limit, args.tasks) for name in VARIANTS}
    table = pd.concat({name: movement(results["reference"], frame)
                       for name, frame in results.items() if name != "reference"}, axis=1)
    pd.set_option("display.width", 200)
    print(table.to_string(float_format=lambda v: f"{v:.3g}"))
    worst = table.xs("max_abs_delta", axis=1, level=1).max(axis=1)
    print("\nlargest change per metric over all variants:")
    moved = worst[worst > 0].sort_values(ascending=False)
    print(moved.to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
