"""Metrics of task `ood` (see `benchmark.tasks.ood` for the rows' definitions): ODIN's
settings, the detection metrics per scorer and set with their mean over sets, and the score
histograms."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.names import ID_SET, MEAN_SET
from benchmark.records import Records
from benchmark.reductions.core import register_metric
from benchmark.stats import Metric, percentile_interval, wilson_interval
from ood.metrics import METRICS, bootstrap_ood_metrics, ood_metrics

# Metrics that are a share of the OOD samples on one side of the threshold.
OOD_SHARES = ("tnr_at_tpr95", "fpr_at_tpr95_ood_positive")


def _interval(replicates: np.ndarray | None, metric: str,
              wilson: tuple[float, float]) -> tuple[float | None, float | None]:
    """The percentile 95 % interval of bootstrap replicates, in percent; none without them.

    For a share of the OOD samples the interval also covers `wilson`, the Wilson interval of
    that share: at 0 % or 100 % every bootstrap replicate lands on the same value and the
    percentile interval collapses to a point, which would claim a noise-free number.
    """
    if replicates is None:
        return None, None
    low, high = percentile_interval(replicates)
    if metric in OOD_SHARES:
        low, high = min(low, wilson[0]), max(high, wilson[1])
    return 100.0 * low, 100.0 * high


def _detection_rows(scorer: str, id_scores: np.ndarray, by_set: dict[str, np.ndarray],
                    resamples: int, seed: int) -> list[Metric]:
    """The six metrics (percent) per set and their unweighted mean over sets, with stratified
    bootstrap 95 % intervals when `resamples` > 0 (one ID resample shared by all sets)."""
    values = {name: ood_metrics(id_scores, scores) for name, scores in by_set.items()}
    replicates = (bootstrap_ood_metrics(id_scores, list(by_set.values()), resamples, seed)
                  if resamples else None)
    n_id = len(id_scores)
    # TNR is a share of the set's OOD images; OpenOOD's FPR (OOD positive) one of the ID images
    counted = {"tnr_at_tpr95": lambda scores: len(scores),
               "fpr_at_tpr95_ood_positive": lambda scores: n_id}
    wilson = {(name, metric): wilson_interval(round(values[name][metric] * counted[metric](scores)),
                                              counted[metric](scores))
              for name, scores in by_set.items() for metric in OOD_SHARES}
    rows = []
    for j, (name, scores) in enumerate(by_set.items()):
        for metric, higher in METRICS.items():
            interval = _interval(None if replicates is None else replicates[metric][:, j],
                                 metric, wilson.get((name, metric), (1.0, 0.0)))
            rows.append(Metric(metric, 100.0 * values[name][metric], n_id + len(scores), higher,
                               {"scorer": scorer, "ood_set": name}, *interval))
    n_ood = sum(len(scores) for scores in by_set.values())
    for metric, higher in METRICS.items():
        mean = float(np.mean([v[metric] for v in values.values()]))
        mean_wilson = tuple(np.mean([wilson[name, metric] for name in by_set], axis=0)) \
            if metric in OOD_SHARES else (1.0, 0.0)  # the unweighted mean, as the value
        interval = _interval(None if replicates is None else replicates[metric].mean(axis=1),
                             metric, mean_wilson)
        rows.append(Metric(metric, 100.0 * mean, n_id + n_ood, higher,
                           {"scorer": scorer, "ood_set": MEAN_SET}, *interval))
    return rows


def _histogram_rows(scorer: str, groups: dict[str, np.ndarray], bins: int) -> list[Metric]:
    """Percent of each group's scores per bin: `bins` equal-width bins over [min, max] of all
    groups' scores together (shared edges; the last bin holds the max), one bin if all equal."""
    everything = np.concatenate(list(groups.values()))
    low, high = float(everything.min()), float(everything.max())
    edges = np.linspace(low, high, bins + 1) if high > low else np.array([low, high])
    centres = (edges[:-1] + edges[1:]) / 2
    rows = [Metric("score_hist_centre", float(centre), len(everything), None,
                   {"scorer": scorer, "bin": i}) for i, centre in enumerate(centres)]
    for name, scores in groups.items():
        counts, _ = np.histogram(scores, bins=edges)
        rows += [Metric("score_hist", 100.0 * count / len(scores), len(scores), None,
                        {"scorer": scorer, "ood_set": name, "bin": i})
                 for i, count in enumerate(counts)]
    return rows



@register_metric("ood", "odin_settings")
def odin_settings(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`odin_temperature` and `odin_eps` (the settings used; no better direction), with ODIN."""
    if "odin" not in params["scorers"]:
        return []
    n_tune = int(records.facts["odin_tune_n"])
    return [Metric(name, float(records.facts[name]), n_tune, None, {"scorer": "odin"})
            for name in ("odin_temperature", "odin_eps")]


def _scores(records: Records, scorer: str, sets: list[str]) -> tuple[np.ndarray,
                                                                    dict[str, np.ndarray]]:
    """One scorer's ID scores and its scores per OOD set, sets in the given order."""
    return (records.one(scorer=scorer, ood_set=ID_SET)["score"],
            {name: records.one(scorer=scorer, ood_set=name)["score"] for name in sets})


@register_metric("ood", "detection")
def detection(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """The six detection metrics per scorer and set and their mean over sets (`_detection_rows`)."""
    metrics = []
    for scorer in params["scorers"]:
        id_scores, by_set = _scores(records, scorer, list(params["sets"]))
        metrics += _detection_rows(scorer, id_scores, by_set, params["bootstrap"], seed)
    return metrics


@register_metric("ood", "score_hist")
def score_hist(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """Score histograms per scorer (`_histogram_rows`), with `histogram_bins` > 0."""
    metrics = []
    for scorer in params["scorers"] if params["histogram_bins"] else []:
        id_scores, by_set = _scores(records, scorer, list(params["sets"]))
        metrics += _histogram_rows(scorer, {ID_SET: id_scores, **by_set},
                                   params["histogram_bins"])
    return metrics
