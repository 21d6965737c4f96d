"""Metrics of task `ood` (see `benchmark.tasks.ood` for the rows' definitions): ODIN's
settings, the detection metrics per scorer and set with their mean over sets and over each
group of sets (OpenOOD's near / far), the full-spectrum rows where covariate-shifted ID sets
count as ID, and the score histograms."""

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
CSID = "csid"  # `role` of a covariate-shifted ID set (OpenOOD's full-spectrum "csid" sets)
ROLES = ("ood", CSID)
GROUP = "ood_group"  # condition of a group's mean row (`ood_set = "mean"`)
SPECTRUM = "spectrum"  # condition of the full-spectrum rows, whose value is FULL_SPECTRUM
FULL_SPECTRUM = "full"


def set_roles(sets: dict[str, Any]) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """The task's `sets` split by role, in the suite's order: the OOD sets, each `group` with
    its OOD sets, and the covariate-shifted ID (`role = "csid"`) sets."""
    ood, groups, csid = [], {}, []
    for name, spec in sets.items():
        table = spec if isinstance(spec, dict) else {}
        if table.get("role") == CSID:
            csid.append(name)
            continue
        ood.append(name)
        if "group" in table:
            groups.setdefault(table["group"], []).append(name)
    return ood, groups, csid


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
                    resamples: int, seed: int, groups: dict[str, list[str]] | None = None,
                    extra: dict[str, str] | None = None) -> list[Metric]:
    """The six metrics (percent) per set, their unweighted mean over all sets and over each of
    `groups`' sets (condition `ood_group`), with stratified bootstrap 95 % intervals when
    `resamples` > 0 (one ID resample shared by all sets); `extra` conditions on every row."""
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
    extra = extra or {}
    rows = []
    for j, (name, scores) in enumerate(by_set.items()):
        for metric, higher in METRICS.items():
            interval = _interval(None if replicates is None else replicates[metric][:, j],
                                 metric, wilson.get((name, metric), (1.0, 0.0)))
            rows.append(Metric(metric, 100.0 * values[name][metric], n_id + len(scores), higher,
                               {"scorer": scorer, "ood_set": name, **extra}, *interval))
    summaries = [({}, list(by_set))] + [({GROUP: group}, names)
                                       for group, names in (groups or {}).items()]
    for where, names in summaries:
        columns = [list(by_set).index(name) for name in names]
        n_ood = sum(len(by_set[name]) for name in names)
        for metric, higher in METRICS.items():
            mean = float(np.mean([values[name][metric] for name in names]))
            mean_wilson = tuple(np.mean([wilson[name, metric] for name in names], axis=0)) \
                if metric in OOD_SHARES else (1.0, 0.0)  # the unweighted mean, as the value
            interval = _interval(None if replicates is None
                                 else replicates[metric][:, columns].mean(axis=1),
                                 metric, mean_wilson)
            rows.append(Metric(metric, 100.0 * mean, n_id + n_ood, higher,
                               {"scorer": scorer, "ood_set": MEAN_SET, **where, **extra},
                               *interval))
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
    """The six detection metrics per scorer and OOD set, their means over sets and groups
    (`_detection_rows`), and with csid sets the same again with their images counted as ID
    (`spectrum = "full"`, OpenOOD's full-spectrum evaluation)."""
    ood_sets, groups, csid = set_roles(params["sets"])
    metrics = []
    for scorer in params["scorers"]:
        id_scores, by_set = _scores(records, scorer, ood_sets)
        metrics += _detection_rows(scorer, id_scores, by_set, params["bootstrap"], seed, groups)
        if csid:
            _, shifted = _scores(records, scorer, csid)
            metrics += _detection_rows(scorer, np.concatenate([id_scores, *shifted.values()]),
                                       by_set, params["bootstrap"], seed, groups,
                                       {SPECTRUM: FULL_SPECTRUM})
    return metrics


@register_metric("ood", "score_hist")
def score_hist(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """Score histograms per scorer (`_histogram_rows`) of the ID and OOD sets, with
    `histogram_bins` > 0."""
    ood_sets, _, _ = set_roles(params["sets"])
    metrics = []
    for scorer in params["scorers"] if params["histogram_bins"] else []:
        id_scores, by_set = _scores(records, scorer, ood_sets)
        metrics += _histogram_rows(scorer, {ID_SET: id_scores, **by_set},
                                   params["histogram_bins"])
    return metrics
