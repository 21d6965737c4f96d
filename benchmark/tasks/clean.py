"""Clean accuracy and calibration tasks, both from the one shared clean forward pass."""

from __future__ import annotations

from typing import Any

import torch

from benchmark.tasks.registry import Metric, TaskContext, register_task
from ood.calibration import adaptive_ece, brier, ece, mce, nll


def topk_errors(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """Number of samples whose label is not among the k highest logits."""
    topk = logits.topk(k, dim=1).indices
    return int((~(topk == labels[:, None]).any(dim=1)).sum())


@register_task("clean", defaults={"topk": [1, 5]})
def clean(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Top-k error (percent) and NLL (nats) on the clean data."""
    logits, labels = ctx.clean_logits(), ctx.labels()
    n, num_classes = logits.shape
    metrics = [Metric.rate(f"top{k}_err", topk_errors(logits, labels, k), n)
               for k in params["topk"] if k == 1 or k < num_classes]
    metrics.append(Metric("nll", nll(logits.double().numpy(), labels.numpy()), n, False))
    return metrics


@register_task("calibration", defaults={"bins": 15})
def calibration(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """ECE / MCE (equal-width bins), adaptive ECE (equal-mass bins) in percent, and Brier score."""
    logits, labels = ctx.clean_logits().double(), ctx.labels()
    probs = torch.softmax(logits, dim=1)
    confidence, predicted = probs.max(dim=1)
    conf, correct = confidence.numpy(), (predicted == labels).numpy()
    n, bins = len(labels), params["bins"]
    return [
        Metric("ece", 100.0 * ece(conf, correct, n_bins=bins), n, False),
        Metric("mce", 100.0 * mce(conf, correct, n_bins=bins), n, False),
        Metric("adaptive_ece", 100.0 * adaptive_ece(conf, correct, n_bins=bins), n, False),
        Metric("brier", brier(probs.numpy(), labels.numpy()), n, False),
    ]
