"""Clean accuracy task (top-k error, NLL) from the shared clean forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.params import param
from benchmark.records import Records
from benchmark.stats import Metric, bootstrap_mean_interval, metric_stream
from benchmark.tasks.registry import TaskContext, classification_columns, register_task
from ood.calibration import nll_per_sample


@dataclass(frozen=True)
class CleanParams:
    """`topk`: the k of the top-k errors (top-5 only with more than 5 classes)."""

    topk: list[int] = param([1, 5], ge=1, nonempty=True, distinct=True)


def reduce_clean(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`top{k}_err` (Wilson) for each k the records hold, `nll` (bootstrap over images)."""
    table = records.one()
    n = len(table)
    metrics = []
    for k in params["topk"]:
        column = "correct" if k == 1 else f"correct_top{k}"
        if column in table.columns:
            metrics.append(Metric.rate(f"top{k}_err", n - int(np.count_nonzero(table[column])),
                                       n))
    nll = table["nll"]
    low, high = bootstrap_mean_interval(nll, metric_stream(seed, "nll", {}))
    metrics.append(Metric("nll", float(nll.mean()), n, False, {}, low, high))
    return metrics


@register_task("clean", params=CleanParams, version=2, reduce=reduce_clean)
def clean(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Top-k error (percent) and NLL (nats, with a bootstrap interval) on the clean data."""
    logits, labels = ctx.clean_logits(), ctx.labels()
    records = Records()
    records.add(index=np.arange(len(labels)),
                **classification_columns(logits, labels, tuple(params["topk"])),
                nll=nll_per_sample(logits.double().numpy(), labels.numpy()))
    return records
