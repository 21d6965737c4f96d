"""Benchmark: `rubench report` for many checkpoints stays bounded in time, size and figures.

Replicates the results of a finished run (default: the CI gate's `.ci-demo/results.csv`, made
by `make test`) to N checkpoints, writes the report, and prints its time, the report folder's
size, the peak memory and the tallest figure in pixels (figures show at most 12 checkpoints).

    python bench/bench_report_scale.py [--checkpoints 1000] [--source .ci-demo/results.csv]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from reports.html import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--source", type=Path, default=Path(".ci-demo/results.csv"))
    args = parser.parse_args()
    source = pd.read_csv(args.source, low_memory=False)
    names = sorted(source["checkpoint"].unique())
    copies = []
    for i in range(args.checkpoints):
        copy = source[source["checkpoint"] == names[i % len(names)]].copy()
        copy["checkpoint"] = f"model{i:05d}"
        copies.append(copy)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        pd.concat(copies).to_csv(out / "results.csv", index=False)
        start = time.perf_counter()
        written = write_report(out)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in written) / 2**20
        tallest = max(Image.open(p).size[1] for p in written if p.suffix == ".png")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"{args.checkpoints} checkpoints x {len(source) // len(names)} rows: report in "
          f"{seconds:.1f} s, {len(written)} files, {size:.1f} MiB, peak memory {peak:.0f} MiB, "
          f"tallest figure {tallest} px")


if __name__ == "__main__":
    main()
