"""Clean accuracy task (top-k error, NLL) from the shared clean forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmark.params import param
from benchmark.tasks.registry import (
    Metric,
    TaskContext,
    bootstrap_mean_interval,
    metric_stream,
    register_task,
)
from ood.calibration import nll_per_sample


def topk_errors(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """Number of samples whose label is not among the k highest logits."""
    topk = logits.topk(k, dim=1).indices
    return int((~(topk == labels[:, None]).any(dim=1)).sum())


@dataclass(frozen=True)
class CleanParams:
    """`topk`: the k of the top-k errors (top-5 only with more than 5 classes)."""

    topk: list[int] = param([1, 5], ge=1, nonempty=True, distinct=True)


@register_task("clean", params=CleanParams, version=2)
def clean(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Top-k error (percent) and NLL (nats, with a bootstrap interval) on the clean data."""
    logits, labels = ctx.clean_logits(), ctx.labels()
    n, num_classes = logits.shape
    metrics = [Metric.rate(f"top{k}_err", topk_errors(logits, labels, k), n)
               for k in params["topk"] if k == 1 or k < num_classes]
    per_image = nll_per_sample(logits.double().numpy(), labels.numpy())
    low, high = bootstrap_mean_interval(per_image, metric_stream(ctx.seed, "nll", {}))
    metrics.append(Metric("nll", float(per_image.mean()), n, False, {}, low, high))
    return metrics
