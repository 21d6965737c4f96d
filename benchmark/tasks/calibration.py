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

The task measures per-sample records and the rows are their reduction
(`benchmark.reductions.calibration`):
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

from benchmark.inputs import HeldoutSplit, InputRequest
from benchmark.params import NO_SPLIT, param
from benchmark.records import Records
from benchmark.tasks.registry import TaskContext, TaskPlaces, predict, register_task
from ood.calibration import (
    brier_per_sample,
    fit_temperature,
    nll_per_sample,
    softmax,
    top_label,
)


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


@dataclass(frozen=True)
class CalibrationParams:
    """See the module docstring."""

    bins: int = param(15, ge=1, le=10_000)
    reliability: bool = param(False)
    temperature_split: str = param(NO_SPLIT)


def _inputs(params: dict[str, Any], places: TaskPlaces) -> dict[str, InputRequest]:
    """The held-out split the temperature is fitted on, if any."""
    split = params.get("temperature_split", NO_SPLIT)
    return {} if split == NO_SPLIT else {
        "heldout": HeldoutSplit(split, "calibration: temperature_split")}


@register_task("calibration", params=CalibrationParams, version=4, inputs=_inputs)
def calibration(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """ECE / MCE / adaptive ECE (%), Brier, reliability bins; optionally temperature-scaled."""
    split = params["temperature_split"]
    logits, labels = ctx.clean_logits().double().numpy(), ctx.data.labels
    records = Records()
    records.add({"scaling": "none"}, **calibration_columns(logits, labels))
    if split == NO_SPLIT:
        return records
    heldout = ctx.input("heldout")
    heldout_logits = predict(ctx.inference_model, heldout, ctx.device, ctx.batch_size,
                             ctx.num_workers, ctx.progress)
    temperature = fit_temperature(heldout_logits.double().numpy(), heldout.labels)
    records.facts.update(temperature=temperature, temperature_n=len(heldout))
    records.add({"scaling": "temperature"},
                **calibration_columns(logits / temperature, labels, with_nll=True))
    return records
