"""Benchmark: `clean` under bf16 autocast vs float32 on a ResNet-18 at 32x32 on the CPU.

Trains a CIFAR-style ResNet-18 (`cifar_resnet18`) briefly on scikit-learn's digits (train
split, upscaled to 32x32, 3 channels) so its predictions mean something, then times the
`clean` task on the test split repeated to `--images` images at fp32 and at bf16, interleaved,
and prints the median time ratio (bf16 / fp32) and the top-1 agreement with fp32.

    python bench/bench_precision.py [--images 2400] [--reps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchmark.archs import build_arch
from benchmark.data import EvalData
from benchmark.datasets import read_digits
from benchmark.tasks import TaskContext, get_task


def as_cifar(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 8, 8) digits in [0, 1] -> (N, 3, 32, 32)."""
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return F.interpolate(images, size=32, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)


def trained_resnet(epochs: int) -> torch.nn.Module:
    """ResNet-18 fitted to the digits train split for a few epochs (seeded)."""
    torch.manual_seed(0)
    train = read_digits(split="train")
    x, y = as_cifar(train.images), torch.from_numpy(train.labels)
    model = build_arch("cifar_resnet18", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for order in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[order]), y[order]).backward()
            optimizer.step()
    return model.eval()


def clean_seconds(model: torch.nn.Module, data: EvalData, precision: str
                  ) -> tuple[float, torch.Tensor]:
    """(seconds, logits) of the `clean` task at `precision` (a fresh context: no cached pass)."""
    ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                      batch_size=200, progress=False, precision=precision)
    start = time.perf_counter()
    get_task("clean").run(ctx, {"topk": [1, 5]})
    return time.perf_counter() - start, ctx.clean_logits()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2400)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = trained_resnet(args.epochs)
    test = read_digits(split="test")
    repeat = -(-args.images // len(test))
    images = as_cifar(test.images).repeat(repeat, 1, 1, 1)[:args.images]
    labels = torch.from_numpy(test.labels).repeat(repeat)[:args.images].numpy()
    data = EvalData(name="digits32", labels=labels, num_classes=10, source="digits x32",
                    images=images)
    ratios, agreement, error = [], 0.0, 0.0
    for _ in range(args.reps):
        fp32, logits32 = clean_seconds(model, data, "fp32")
        bf16, logits16 = clean_seconds(model, data, "bf16")
        ratios.append(bf16 / fp32)
        agreement = 100.0 * float((logits32.argmax(1) == logits16.argmax(1)).double().mean())
        error = 100.0 * float((logits32.argmax(1) != torch.from_numpy(labels)).double().mean())
        print(f"fp32 {fp32:.2f} s, bf16 {bf16:.2f} s, ratio {bf16 / fp32:.2f}")
    print(f"cifar_resnet18 at 32x32, {args.images} images, {args.threads} thread(s), CPU "
          f"(fp32 top-1 error {error:.1f} %): median bf16 / fp32 time "
          f"{statistics.median(ratios):.2f}, top-1 agreement {agreement:.2f} %")


if __name__ == "__main__":
    main()
