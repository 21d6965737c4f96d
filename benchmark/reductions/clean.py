"""Metrics of task `clean`: top-k errors and NLL."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.records import Records
from benchmark.reductions.core import register_metric
from benchmark.stats import Metric, bootstrap_mean_interval, metric_stream


@register_metric("clean", "topk_err")
def topk_err(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`top{k}_err` (Wilson) for each k of `topk` the records hold."""
    table = records.one()
    n = len(table)
    metrics = []
    for k in params["topk"]:
        column = "correct" if k == 1 else f"correct_top{k}"
        if column in table.columns:
            metrics.append(Metric.rate(f"top{k}_err", n - int(np.count_nonzero(table[column])),
                                       n))
    return metrics


@register_metric("clean", "nll")
def nll(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`nll`: the mean per-image NLL (nats), bootstrap interval over images."""
    table = records.one()
    values = table["nll"]
    low, high = bootstrap_mean_interval(values, metric_stream(seed, "nll", {}))
    return [Metric("nll", float(values.mean()), len(table), False, {}, low, high)]
