"""Task `calibration`: ECE / MCE / adaptive ECE / Brier, reliability-diagram data, and optional
temperature scaling fit on a held-out split, all from the shared clean forward pass.

Rows (rates in percent):

- condition ``scaling = "none"``: ``ece``, ``mce``, ``adaptive_ece``, ``brier`` of the raw
  logits (Guo et al.: equal-width bins (i/B, (i+1)/B], top label, L1, weighted by bin size;
  adaptive ECE: B equal-mass bins), each with a 95 % bootstrap interval over images (an MCE on
  a few hundred images has a wide one). A binned calibration error is biased upward, and more
  so on a resample (duplicated images fill bins unevenly), so the percentile interval of ECE,
  MCE and adaptive ECE can sit wholly above the estimate; they get the hull of the percentile
  and the basic bootstrap intervals ([min(q2.5, 2 v - q97.5), max(q97.5, 2 v - q2.5)], clipped
  to [0, 100]), which always contains the estimate and keeps the resampling spread. Brier and
  NLL, plain means, keep the percentile interval;
- with ``reliability = true`` (default false, which keeps one row per metric): per bin,
  condition ``bin`` = i (0-based, bin (i/B, (i+1)/B]), ``reliability_count`` (samples) and, for
  non-empty bins, ``reliability_confidence`` (mean top-label confidence) and
  ``reliability_accuracy`` (share correct, with its Wilson interval). Diagram rows and the
  fitted ``temperature`` have no better direction (``higher_is_better`` empty);
- with ``temperature_split = "<split>"`` (default ``"none"``): T fit by NLL on that split of the
  suite's data set (its own forward pass), then the same rows plus ``nll`` (nats) for logits / T
  under ``scaling = "temperature"``, and the fitted ``temperature`` (a parameter, not a score).
  The raw NLL is `clean`'s ``nll``. Digits has a ``val`` split; CIFAR only ``train`` (fitting on
  training images biases T); ImageNet and Tiny-ImageNet have no held-out split.

The task measures per-sample records and the rows are their reduction (`reduce_calibration`):
one table per ``scaling`` (``"none"``, and ``"temperature"`` with a split) with columns ``index``
(position in the evaluated data), ``correct`` (top-1 hit), ``pred`` (int32), ``confidence``
(top softmax probability, float64), ``brier`` (each image's Brier term, float64) and, scaled
only, ``nll`` (nats, float64); facts ``temperature`` (the fitted T) and ``temperature_n`` (the
held-out images it was fit on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.inputs import NO_SPLIT, HeldoutSplit, InputRequest
from benchmark.params import param
from benchmark.records import Records, SampleTable
from benchmark.stats import Metric, bootstrap_resamples, metric_stream
from benchmark.tasks.registry import TaskContext, TaskPlaces, predict, register_task
from ood.calibration import (
    adaptive_ece,
    brier_per_sample,
    ece,
    fit_temperature,
    mce,
    nll_per_sample,
    reliability_bins,
    resampled_calibration_errors,
    softmax,
    top_label,
)
from ood.metrics import percentile_interval

BINNED = ("ece", "mce", "adaptive_ece")  # binned errors: biased upward under resampling


def calibration_columns(logits: np.ndarray, labels: np.ndarray, with_nll: bool = False
                        ) -> dict[str, np.ndarray]:
    """Per-sample columns of float64 `logits` that every calibration number is a reduction of:
    `index`, `correct` (top-1 hit of the float64 softmax), `pred` (int32), `confidence` (top
    softmax probability, float64: ECE reads it), `brier` (each sample's Brier term, float64)
    and, with `with_nll`, `nll` (nats, float64)."""
    probs = softmax(logits)
    conf, predicted = top_label(probs, from_logits=False)
    columns = {"index": np.arange(len(labels), dtype=np.int64), "correct": predicted == labels,
               "pred": predicted.astype(np.int32), "confidence": conf,
               "brier": brier_per_sample(probs, labels)}
    if with_nll:
        columns["nll"] = nll_per_sample(logits, labels)
    return columns


def calibration_rows(table: SampleTable, bins: int, reliability: bool,
                     conditions: dict[str, Any], seed: int) -> list[Metric]:
    """ECE, MCE, adaptive ECE (percent), Brier (and NLL where the table has an `nll` column)
    of one table of `calibration_columns`, with 95 % bootstrap intervals over images, and
    optionally the reliability bins.

    The intervals are percentile intervals of each statistic over one shared set of image
    resamples (seeded by `seed` and `conditions`, drawn over the rows in `index` order); they
    make these numbers gateable with their sampling noise. float64 numpy throughout (for a few
    thousand rows torch's thread pool costs more than the arithmetic).
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
        if name in BINNED:  # percentile and basic bootstrap together, see the module docstring
            low, high = max(0.0, min(low, 2 * value - high)), min(100.0, max(high, 2 * value - low))
        metrics.append(Metric(name, value, n, False, dict(conditions), low, high))
    if reliability:
        diagram = reliability_bins(conf, correct, n_bins=bins)
        for i in range(bins):
            where = {**conditions, "bin": i}
            count = int(diagram.count[i])
            metrics.append(Metric("reliability_count", count, n, None, where))
            if count:
                metrics.append(Metric("reliability_confidence", 100.0 * diagram.confidence[i],
                                      count, None, where))
                metrics.append(Metric.rate("reliability_accuracy",
                                           round(diagram.accuracy[i] * count), count,
                                           higher_is_better=None, conditions=where))
    return metrics


@dataclass(frozen=True)
class CalibrationParams:
    """See the module docstring."""

    bins: int = param(15, ge=1, le=10_000)
    reliability: bool = param(False)
    temperature_split: str = param(NO_SPLIT)


def reduce_calibration(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """The rows of the module docstring from the tables `scaling = "none"` (and, with a
    `temperature_split`, the fitted temperature's facts and `scaling = "temperature"`)."""
    bins, reliability = params["bins"], params["reliability"]
    metrics = calibration_rows(records.one(scaling="none"), bins, reliability,
                               {"scaling": "none"}, seed)
    if params["temperature_split"] == NO_SPLIT:
        return metrics
    where = {"scaling": "temperature"}
    metrics.append(Metric("temperature", float(records.facts["temperature"]),
                          int(records.facts["temperature_n"]), None, where))
    metrics.extend(calibration_rows(records.one(**where), bins, reliability, where, seed))
    return metrics


def _inputs(params: dict[str, Any], places: TaskPlaces) -> dict[str, InputRequest]:
    """The held-out split the temperature is fitted on, if any."""
    split = params.get("temperature_split", NO_SPLIT)
    return {} if split == NO_SPLIT else {
        "heldout": HeldoutSplit(split, "calibration: temperature_split")}


@register_task("calibration", params=CalibrationParams, version=4, inputs=_inputs,
               reduce=reduce_calibration)
def calibration(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """ECE / MCE / adaptive ECE (%), Brier, reliability bins; optionally temperature-scaled."""
    split = params["temperature_split"]
    logits, labels = ctx.clean_logits().double().numpy(), ctx.data.labels
    records = Records()
    records.add({"scaling": "none"}, **calibration_columns(logits, labels))
    if split == NO_SPLIT:
        return records
    heldout = ctx.input("heldout")
    heldout_logits = predict(ctx.model, heldout, ctx.device, ctx.batch_size, ctx.num_workers,
                             ctx.progress)
    temperature = fit_temperature(heldout_logits.double().numpy(), heldout.labels)
    records.facts.update(temperature=temperature, temperature_n=len(heldout))
    records.add({"scaling": "temperature"},
                **calibration_columns(logits / temperature, labels, with_nll=True))
    return records
