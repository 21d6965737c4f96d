"""Metrics of task `calibration` (see `benchmark.tasks.calibration` for the rows' definitions):
the calibration errors with their shared image bootstrap, the fitted temperature, and the
reliability-diagram bins."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.params import NO_SPLIT
from benchmark.records import Records, SampleTable
from benchmark.reductions.core import register_metric
from benchmark.stats import Metric, bootstrap_resamples, metric_stream, percentile_interval
from ood.calibration import (
    adaptive_ece,
    ece,
    mce,
    reliability_bins,
    resampled_calibration_errors,
)

BINNED = ("ece", "mce", "adaptive_ece")  # binned errors: biased upward under resampling


def _scalings(records: Records, params: dict[str, Any]) -> list[dict[str, str]]:
    """The conditions of the tables: raw logits, and temperature-scaled with a split."""
    return [{"scaling": "none"}] + ([] if params["temperature_split"] == NO_SPLIT
                                    else [{"scaling": "temperature"}])


def calibration_errors(table: SampleTable, bins: int, conditions: dict[str, Any], seed: int
                       ) -> list[Metric]:
    """ECE, MCE, adaptive ECE (percent), Brier (and NLL where the table has an `nll` column)
    of one table of `calibration_columns`, with 95 % bootstrap intervals over images.

    The intervals are percentile intervals of each statistic over one shared set of image
    resamples (seeded by `seed` and `conditions`, drawn over the rows in `index` order); they
    make these numbers gateable with their sampling noise. float64 numpy throughout.
    """
    conf, correct = table["confidence"], table["correct"]
    n = len(table)
    per_image = {name: table[name] for name in ("brier", "nll") if name in table.columns}
    values = {"ece": 100.0 * ece(conf, correct, n_bins=bins),
              "mce": 100.0 * mce(conf, correct, n_bins=bins),
              "adaptive_ece": 100.0 * adaptive_ece(conf, correct, n_bins=bins),
              **{name: float(v.mean()) for name, v in per_image.items()}}
    draws: dict[str, list[np.ndarray]] = {name: [] for name in values}
    for rows in bootstrap_resamples(n, metric_stream(seed, "calibration", conditions)):
        for name, errors in resampled_calibration_errors(conf, correct, rows, bins).items():
            draws[name].append(100.0 * errors)
        for name, v in per_image.items():
            draws[name].append(v[rows].mean(axis=1))
    metrics = []
    for name, value in values.items():
        low, high = percentile_interval(np.concatenate(draws[name]))
        if name in BINNED:  # percentile and basic bootstrap together (the task's docstring)
            low, high = max(0.0, min(low, 2 * value - high)), min(100.0, max(high, 2 * value - low))
        metrics.append(Metric(name, value, n, False, dict(conditions), low, high))
    return metrics


@register_metric("calibration", "errors")
def errors(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`ece`, `mce`, `adaptive_ece`, `brier` (and, scaled, `nll`) per scaling."""
    return [row for where in _scalings(records, params)
            for row in calibration_errors(records.one(**where), params["bins"], where, seed)]


@register_metric("calibration", "temperature")
def temperature(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`temperature`: the fitted T (no better direction), with a `temperature_split`."""
    if params["temperature_split"] == NO_SPLIT:
        return []
    return [Metric("temperature", float(records.facts["temperature"]),
                   int(records.facts["temperature_n"]), None, {"scaling": "temperature"})]


def reliability_rows(table: SampleTable, bins: int, conditions: dict[str, Any]
                     ) -> list[Metric]:
    """Per bin `reliability_count` and, non-empty, `reliability_confidence` and
    `reliability_accuracy` (Wilson), under `conditions` plus `bin`."""
    conf, correct = table["confidence"], table["correct"]
    diagram = reliability_bins(conf, correct, n_bins=bins)
    metrics = []
    for i in range(bins):
        where = {**conditions, "bin": i}
        count = int(diagram.count[i])
        metrics.append(Metric("reliability_count", count, len(table), None, where))
        if count:
            metrics.append(Metric("reliability_confidence", 100.0 * diagram.confidence[i],
                                  count, None, where))
            metrics.append(Metric.rate("reliability_accuracy",
                                       round(diagram.accuracy[i] * count), count,
                                       higher_is_better=None, conditions=where))
    return metrics


@register_metric("calibration", "reliability")
def reliability(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """The reliability-diagram bins per scaling, with `reliability = true`."""
    if not params["reliability"]:
        return []
    return [row for where in _scalings(records, params)
            for row in reliability_rows(records.one(**where), params["bins"], where)]
