"""Benchmark the corruptions: evaluation overhead and generation throughput.

1. Evaluating a CIFAR-10-C-format folder (19 corruptions x 5 severities, memory-mapped `.npy`)
   with the `corruptions` task vs bare forward passes over the same images already in memory
   as float tensors; median ratio over repetitions (target <= 1.25). Workloads: a small CNN
   (overhead-bound, the worst case) and PreActResNet-18.
2. Generating all 19 x 5 corruptions for 1,000 32x32 and 100 224x224 images with the ImageNet
   constants (what `imagecorruptions` always uses) vs `imagecorruptions` 1.1.2 called image by
   image (target >= 5x). `imagecorruptions` is timed on a subset (--oracle-32 / --oracle-224
   images per corruption and severity) and its throughput extrapolated; it is skipped when not
   installed. Prints per-corruption times and the slowest corruption.

    python bench/bench_corruptions.py [--n 500] [--reps 3] [--skip-eval] [--skip-generate]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import benchmark.tasks.corruptions  # noqa: F401  (registers the task)
from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.data import EvalData
from benchmark.tasks import TaskContext, get_task
from corruptions.catalog import ALL, SEVERITIES
from corruptions.generate import corrupt


def small_cnn() -> nn.Module:
    """Two conv layers and a linear head for 32x32 RGB (about 20k parameters)."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 64, 10))


def write_cifar_c(root: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random CIFAR-10-C-format folder of n test images; returns clean images and labels."""
    rng = np.random.default_rng(seed)
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True)
    labels = rng.integers(0, 10, n)
    for name in ALL:
        np.save(folder / f"{name}.npy", rng.integers(0, 256, (5 * n, 32, 32, 3), np.uint8))
    np.save(folder / "labels.npy", np.tile(labels, 5))
    return rng.integers(0, 256, (n, 3, 32, 32), np.uint8), labels


def bench_eval(n: int, reps: int, batch_size: int) -> None:
    """Harness (task over the folder) vs bare forward passes over in-memory float tensors."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clean, labels = write_cifar_c(root, n)
        data = EvalData(name="cifar10", labels=labels, num_classes=10, source="random",
                        images=torch.from_numpy(clean))
        arrays = [torch.from_numpy(np.load(root / "CIFAR-10-C" / f"{name}.npy"))
                  .permute(0, 3, 1, 2).float().div(255).contiguous() for name in ALL]
        task = get_task("corruptions")
        for label, net in (("small CNN", small_cnn()),
                           ("PreActResNet-18", build_arch("preactresnet18", num_classes=10))):
            model = NormalizedModel(net, [0.5] * 3, [0.25] * 3).eval()

            def harness(model: nn.Module = model) -> None:
                ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                                  batch_size=batch_size, progress=False, data_root=root)
                task.run(ctx, task.defaults)

            def bare(model: nn.Module = model) -> None:
                with torch.inference_mode():
                    for array in arrays:
                        for s in SEVERITIES:
                            block = array[(s - 1) * n:s * n]
                            for start in range(0, n, batch_size):
                                model(block[start:start + batch_size])

            harness()
            bare()  # warm-up
            ratios, times = [], []
            for rep in range(reps):
                pair = {}
                for name, fn in ((("h", harness), ("b", bare)) if rep % 2 == 0
                                 else (("b", bare), ("h", harness))):
                    start = time.perf_counter()
                    fn()
                    pair[name] = time.perf_counter() - start
                ratios.append(pair["h"] / pair["b"])
                times.append(pair)
            print(f"eval CIFAR-10-C format, {label}, {n} images x 95: harness "
                  f"{statistics.median(t['h'] for t in times):.2f} s, bare "
                  f"{statistics.median(t['b'] for t in times):.2f} s, ratio "
                  f"{statistics.median(ratios):.3f} (target <= 1.25)")


@functools.cache
def load_oracle():
    """imagecorruptions with the test-time shims, or None."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    try:
        import pytest
        from fixtures_corruptions import load_imagecorruptions

        return load_imagecorruptions(pytest.MonkeyPatch())
    except ImportError:
        return None


def bench_generate(count: int, side: int, oracle_count: int) -> None:
    """Our batched generator vs imagecorruptions image by image, per corruption."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(20, 230, side)
    images = np.clip((ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
                     + rng.normal(0, 25, (count, side, side, 3)), 0, 255).astype(np.uint8)
    oracle = load_oracle()
    from PIL import Image

    ours_total = oracle_total = 0.0
    rows = []
    for name in ALL:
        start = time.perf_counter()
        for severity in SEVERITIES:
            corrupt(images, name, severity, "imagenet")
        ours = (time.perf_counter() - start) / count  # seconds per image, all 5 severities
        theirs = float("nan")
        if oracle is not None:
            start = time.perf_counter()
            for severity in SEVERITIES:
                for image in images[:oracle_count]:
                    np.uint8(getattr(oracle, name)(Image.fromarray(image), severity))
            theirs = (time.perf_counter() - start) / oracle_count
            oracle_total += theirs
        ours_total += ours
        rows.append((name, ours, theirs))
    print(f"\ngenerate 19 x 5, {count} images {side}x{side}, ImageNet constants "
          f"(imagecorruptions timed on {oracle_count} images):")
    for name, ours, theirs in rows:
        print(f"  {name:<18} ours {1000 * ours:8.2f} ms/img  imagecorruptions "
              f"{1000 * theirs:8.2f} ms/img  speed-up {theirs / ours:6.1f}x")
    slowest = max(rows, key=lambda r: r[1])
    least = min(rows, key=lambda r: r[2] / r[1] if oracle is not None else 0)
    print(f"  total: ours {ours_total * count:.1f} s for {count} images "
          f"({1 / ours_total:.1f} img/s, all 95), imagecorruptions "
          f"{oracle_total * count:.1f} s (extrapolated); speed-up {oracle_total / ours_total:.1f}x"
          f" (target >= 5x); slowest corruption (ours): {slowest[0]} "
          f"({1000 * slowest[1]:.1f} ms/img); smallest speed-up: {least[0]} "
          f"({least[2] / least[1]:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="CIFAR-10-C images per severity")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--oracle-32", type=int, default=100)
    parser.add_argument("--oracle-224", type=int, default=5)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--skip-generate", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    if not args.skip_eval:
        bench_eval(args.n, args.reps, args.batch_size)
    if not args.skip_generate:
        bench_generate(1000, 32, args.oracle_32)
        bench_generate(100, 224, args.oracle_224)


if __name__ == "__main__":
    main()
