"""Benchmark: what per-sample records cost — store size, evaluation time, recomputing reports.

Three parts (`--part`, default all):

- `size`: the stored records of the full `cifar10` suite per checkpoint, extrapolated to its
  10,000 test images. Every task of the suite (its parameters, attack steps cut to a few: the
  record layout does not depend on them; OOD folder sets replaced by generated sets of the same
  size; CIFAR-10-C generated) measures a CIFAR-shaped ResNet on random 32x32 images at two
  sizes; the encoded bytes grow linearly in the number of images, and the line is evaluated at
  10,000 images (CW and DDN keep their `limit = 1000`). Issue target: <= 50 MB.
- `time`: the CI gate's evaluation (`.ci/zoo`, digits suite, 200 images, 1 thread) with this
  checkout and with `--base-rev` (a commit before records existed), `--reps` times in this
  command, which side runs first alternating; prints the median ratio. Target: <= 1.03.
- `report`: evaluates `--checkpoints` (default 20: the zoo's ERM model, the transfer tasks'
  surrogate, and 19 jittered variants of the zoo) on the full digits suite once, then times
  `rubench report --recompute` as a user types it, in its own process (every metric
  re-reduced from the records, then the report written; both spread over the usable cores:
  prefix `taskset -c 0` for one). Target: < 30 s.

    python bench/bench_records.py [--part size|time|report] [--base-rev f6c4b73] [--reps 3]
                                   [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.data import EvalData
from benchmark.readers import read_cifar10
from benchmark.suites import load_suite
from benchmark.tasks import TaskContext, get_task

ROOT = Path(__file__).resolve().parent.parent
FEW_STEPS = {"pgd": {"steps": 2}, "deepfool": {"steps": 3},
             "cw": {"steps": 3, "binary_search_steps": 1}, "ddn": {"steps": 3}}
FULL_N = 10_000


def _cifar_like(n: int, seed: int, root: Path) -> EvalData:
    """n random 32x32 images written as a CIFAR-10 test batch under `root` (the corruptions
    task generates CIFAR-10-C from the files) and read back."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures import write_cifar10

    write_cifar10(root, n_train_per_batch=1, n_test=n, seed=seed)
    return read_cifar10(root / "cifar-10-batches-py")


def _suite_tasks(n: int) -> list[tuple[str, str, dict]]:
    """(name, task type, params) of the cifar10 suite, made runnable here at n images."""
    tasks = []
    for spec in load_suite("cifar10").tasks:
        params = {**spec.params, **FEW_STEPS.get(spec.task, {})}
        if spec.task == "corruptions":
            params["generate"] = True
        if spec.task == "ood":  # generated sets stand in for the folders, same size as ID
            params["sets"] = {name: {"kind": "uniform" if i % 2 else "gaussian", "n": n}
                              for i, name in enumerate(params["sets"])}
            params["odin_tune_split"] = "none"
        if spec.task == "transfer":
            continue  # not in the cifar10 suite
        tasks.append((spec.name, spec.task, params))
    return tasks


def measure_size(sizes: tuple[int, int], data_root: Path) -> None:
    """Encoded records per task at two sizes, and the extrapolation to 10,000 images."""
    suite = load_suite("cifar10")
    meta = suite.model_defaults
    torch.manual_seed(0)
    model = NormalizedModel(build_arch("cifar_resnet18", num_classes=10), meta["mean"],
                            meta["std"]).eval()
    per_task: dict[str, list[int]] = {}
    raw: dict[str, list[int]] = {}  # uncompressed: an upper bound whatever the model's outputs
    for n in sizes:
        root = data_root / f"n{n}"
        data = _cifar_like(n, seed=n, root=root)
        ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                          batch_size=256, progress=False, meta=dict(meta),
                          data_root=root, data_id=f"bench-{n}")
        for name, task, params in _suite_tasks(n):
            start = time.perf_counter()
            records, _ = get_task(task).run(ctx, params)
            size = len(records.encode())
            per_task.setdefault(name, []).append(size)
            raw.setdefault(name, []).append(sum(v.nbytes for t in records
                                                for v in t.columns.values()))
            print(f"  n={n:<5} {name:<12} {size / 2**10:9.1f} KiB  (uncompressed "
                  f"{raw[name][-1] / 2**10:.1f} KiB; {time.perf_counter() - start:.1f} s)",
                  flush=True)
    totals = [0.0, 0.0]
    print(f"extrapolated to {FULL_N} images (per checkpoint; OOD sets of as many images):")
    limits = {spec.name: spec.params.get("limit", 0) or FULL_N for spec in suite.tasks}
    for name in per_task:
        target = min(limits[name], FULL_N)
        estimates = []
        for i, (small, large) in enumerate((per_task[name], raw[name])):
            slope = (large - small) / (sizes[1] - sizes[0])
            estimates.append(large + slope * (target - sizes[1]))
            totals[i] += estimates[-1]
        print(f"  {name:<12} {estimates[0] / 2**20:8.2f} MiB  (uncompressed "
              f"{estimates[1] / 2**20:.2f} MiB; at {target} images)")
    print(f"store size of the cifar10 suite's records at {FULL_N} images: "
          f"{totals[0] / 2**20:.1f} MiB per checkpoint stored, at most {totals[1] / 2**20:.1f} "
          "MiB uncompressed whatever the model (target <= 50 MB)")


def _evaluate(python_path: Path, out: Path) -> float:
    command = [sys.executable, "-c", "import sys; from benchmark.cli import main; "
               "sys.exit(main(sys.argv[1:]))", "evaluate", str(ROOT / ".ci/zoo"),
               "--suite", "digits", "--data-root", str(ROOT / ".ci-demo/data"), "--limit",
               "200", "--threads", "1", "--out", str(out), "--no-progress"]
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=python_path, env={"PYTHONPATH": str(python_path),
                                                   "PATH": "/usr/bin:/bin"},
                   check=True, capture_output=True)
    return time.perf_counter() - start


def measure_time(base_rev: str, reps: int) -> None:
    """The gate's evaluation with and without records, alternated."""
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        base_rev], check=True, capture_output=True)
        try:
            ratios = []
            for rep in range(reps):  # ABBA: neither side always runs first
                if rep % 2:
                    now = _evaluate(ROOT, Path(folder) / "out-now")
                    before = _evaluate(base, Path(folder) / "out-base")
                else:
                    before = _evaluate(base, Path(folder) / "out-base")
                    now = _evaluate(ROOT, Path(folder) / "out-now")
                ratios.append(now / before)
                print(f"  rep {rep}: without records {before:.1f} s, with {now:.1f} s, "
                      f"ratio {now / before:.3f}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(base)], check=True, capture_output=True)
    print(f"evaluation time with records / without (median of {reps}): "
          f"{statistics.median(ratios):.3f} (target <= 1.03)")


def measure_report(checkpoints: int, workdir: Path | None) -> None:
    """Evaluate jittered copies of the digits zoo once, then time the recomputed report.

    With `workdir`, the zoo and the evaluation are kept there, and a later run resumes them
    (the store already holds every unit) and only times the report.
    """
    from benchmark.cli import main as rubench

    with tempfile.TemporaryDirectory() as scratch:
        folder = workdir or Path(scratch)
        zoo = Path(folder) / "zoo"
        zoo.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / ".ci/zoo/rubench.toml", zoo)
        members = sorted((ROOT / ".ci/zoo").glob("*.safetensors"))
        shutil.copy(ROOT / ".ci/zoo/erm.safetensors", zoo)  # the suite's transfer surrogate
        generator = torch.Generator().manual_seed(0)
        for i in range(checkpoints - 1):
            if (zoo / f"model{i:02d}.safetensors").exists():
                continue
            state = load_file(members[i % len(members)])
            state = {k: v + 1e-3 * torch.randn(v.shape, generator=generator) * v.std()
                     if v.is_floating_point() and v.numel() > 1 else v
                     for k, v in state.items()}
            save_file(state, zoo / f"model{i:02d}.safetensors")
        out = Path(folder) / "out"
        start = time.perf_counter()
        assert rubench(["evaluate", str(zoo), "--suite", "digits", "--data-root",
                        str(ROOT / ".ci-demo/data"), "--out", str(out), "--no-progress"]) == 0
        print(f"  evaluated {checkpoints} checkpoints in {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()  # the command as a user types it: imports included
        subprocess.run([sys.executable, "-m", "benchmark.cli", "report", str(out), "--recompute",
                        "--no-progress"], check=True, capture_output=True)
        seconds = time.perf_counter() - start
    print(f"rubench report --recompute, {checkpoints} checkpoints x the digits suite: "
          f"{seconds:.1f} s (target < 30 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "size", "time", "report"), default="all")
    parser.add_argument("--sizes", type=int, nargs=2, default=(200, 400))
    parser.add_argument("--base-rev", default="f6c4b73")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--workdir", type=Path, help="keep the report part's zoo and results "
                        "here; a second run reuses them")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part in ("all", "size"):
        with tempfile.TemporaryDirectory() as data_root:
            measure_size(tuple(args.sizes), Path(data_root))
    if args.part in ("all", "time"):
        measure_time(args.base_rev, args.reps)
    if args.part in ("all", "report"):
        measure_report(args.checkpoints, args.workdir)


if __name__ == "__main__":
    main()
