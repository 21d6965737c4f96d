"""Metrics of task `selective` (selective prediction; see `benchmark.tasks.selective`).

A selective classifier predicts on the images whose confidence is at or above a threshold t and
abstains on the rest. Every threshold is a distinct confidence value of the evaluated images, so
**images of equal confidence are accepted or rejected together**: the risk-coverage curve has
one point per distinct confidence, (c_j, r_j) for the j-th highest value t_j, with

- coverage c_j = K_j / n, K_j = #{conf >= t_j} (c_m = 1 at the lowest value);
- selective risk r_j = E_j / K_j, E_j = #{conf >= t_j and wrong};
- generalized risk g_j = E_j / n = P(accepted and wrong) (Traub et al. 2024).

Rows per ``scorer`` (percent; ``n`` = images; 95 % percentile bootstrap intervals over images):

- ``aurc``: Σ_j (c_j − c_{j−1}) · r_j (c_0 = 0): the curve as a step function, each coverage
  interval (c_{j−1}, c_j] at the risk of its threshold. Without ties this is the mean selective
  risk over the n operating points, (1/n) Σ_k E_k / k (Geifman & El-Yaniv 2017, Geifman et al.
  2019). Lower is better.
- ``augrc``: Σ_j (c_j − c_{j−1}) · (g_{j−1} + g_j) / 2 with (c_0, g_0) = (0, 0): the mean
  generalized risk over coverage in [0, 1], linear between the points (a tie group accepted in a
  random order gives that line in expectation). This is Traub et al.'s reference
  (fd-shifts ``RiskCoverageStats.augrc``: points at distinct confidences, then (0, 0), trapezoid)
  and equals ½ π² + π (1 − π) (1 − AUROC_f) with π the error rate and AUROC_f the AUROC of the
  confidence separating correct from wrong images (ties counted ½). Lower is better.
- ``selective_risk`` per ``coverage`` c (percent): with k = ceil(c · n / 100) (computed as
  ceil(c · n / 100 − 1e-9), so that 1.1 % of 50,000 images is 550, not 551 through float
  rounding), the risk r_j of the first point with K_j >= k: the error rate among the k most
  confident images, where a tie group straddling the k-th place is accepted whole (the
  coverage actually used may exceed c). Lower is better.
- ``coverage_at_risk`` per ``risk`` r (percent): the largest c_j with r_j <= r (compared as
  100 · E_j <= r · K_j), 0 when no point qualifies. Higher is better.

torch-uncertainty (``torch_uncertainty/metrics/classification/risk_coverage.py``) sorts the
images by confidence with ``argsort`` (ties in an arbitrary order, one point per image) and takes
the cumulative error rates R_k = E_k / k, k = 1..n:

- its ``AURC`` is the trapezoid of R_k over k / n, k = 1..n, divided by (1 − 1/n), i.e.
  (Σ_k R_k − (R_1 + R_n) / 2) / (n − 1); without ties it differs from ``aurc`` by at most
  1 / (n − 1) (100 / (n − 1) percentage points);
- its ``AUGRC`` is the same trapezoid of R_k · k/n, i.e. (Σ_k E_k − (E_1 + E_n) / 2) /
  (n (n − 1)); without ties it differs from ``augrc`` by at most 1 / (n − 1)
  as well;
- ``RiskAtxCov`` is R at k = ceil(n · c) (no float guard), equal to ``selective_risk`` without
  ties; ``CovAtxRisk`` is the largest k / n with R_k <= r (NaN when none, here 0), equal to
  ``coverage_at_risk`` without ties.

With ties torch-uncertainty's numbers depend on the sort's order among tied images; these do not.

Intervals: one stream per scorer, ``metric_stream(seed, "selective", {"scorer": s})``, shared by
its rows; ``bootstrap`` resamples (0 = no intervals). Each resample is reduced exactly like the
data (ties of duplicated images stay ties), vectorized over chunks of resamples. A share's
interval also covers its Wilson interval — ``selective_risk``: the errors among the accepted
images, ``coverage_at_risk``: the accepted images among all — since at 0 % or 100 % every
resample lands on the same value and the percentile interval would claim no noise at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.records import Records
from benchmark.reductions.core import register_metric
from benchmark.stats import (
    Metric,
    bootstrap_resamples,
    metric_stream,
    percentile_interval,
    wilson_interval,
)

COVERAGE_EPS = 1e-9  # float guard of ceil(c * n / 100)


def tie_groups(confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): `order` sorts the images by descending confidence (stable), `starts`
    are the positions in that order where each group of equal confidence begins."""
    conf = np.asarray(confidence, dtype=np.float64)
    order = np.argsort(-conf, kind="stable")
    ranked = conf[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]) if ranked.size else \
        np.zeros(0, dtype=np.int64)
    return order, starts


def curve_counts(weights: np.ndarray, wrong: np.ndarray, order: np.ndarray, starts: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of `weights` (B, n) — how often each image is drawn — and per tie group in
    descending confidence: the group's count N, the accepted count K and errors E at its
    threshold (all (B, m), float64). A group drawn zero times repeats the previous point."""
    w = np.asarray(weights, dtype=np.float64)[:, order]
    group_n = np.add.reduceat(w, starts, axis=1)
    group_e = np.add.reduceat(w * wrong[order], starts, axis=1)
    return group_n, np.cumsum(group_n, axis=1), np.cumsum(group_e, axis=1)


def selective_stats(weights: np.ndarray, wrong: np.ndarray, order: np.ndarray,
                    starts: np.ndarray, coverages: list[float], risks: list[float]
                    ) -> dict[str, np.ndarray]:
    """`aurc`, `augrc`, and per coverage / risk `selective_risk` / `coverage_at_risk` (percent),
    each a (B,) array, of the resamples `weights` (B, n) (see the module docstring)."""
    group_n, k, e = curve_counts(weights, wrong, order, starts)
    n = k[:, -1:]  # every row holds n draws
    risk = np.divide(e, k, out=np.zeros_like(e), where=k > 0)
    out = {"aurc": 100.0 * (group_n * risk).sum(axis=1) / n[:, 0]}
    e_prev = np.concatenate([np.zeros_like(e[:, :1]), e[:, :-1]], axis=1)
    out["augrc"] = 100.0 * (group_n * (e_prev + e)).sum(axis=1) / (2.0 * n[:, 0] ** 2)
    rows = np.arange(len(k))
    for c in coverages:
        need = np.maximum(np.ceil(c * n[:, 0] / 100.0 - COVERAGE_EPS), 1.0)
        first = np.argmax(k >= need[:, None], axis=1)
        out[f"selective_risk@{c!r}"] = 100.0 * risk[rows, first]
    for r in risks:
        ok = 100.0 * e <= r * k
        out[f"coverage_at_risk@{r!r}"] = 100.0 * np.where(ok, k, 0.0).max(axis=1) / n[:, 0]
    return out


def selective_metrics(correct: np.ndarray, confidence: np.ndarray, coverages: list[float],
                      risks: list[float], conditions: dict[str, Any], seed: int,
                      resamples: int) -> list[Metric]:
    """The rows of one scorer's table with their percentile bootstrap intervals."""
    wrong = ~np.asarray(correct, dtype=bool)
    n = wrong.size
    if n == 0:
        raise ValueError("selective: no images")
    order, starts = tie_groups(confidence)
    values = {key: float(v[0]) for key, v in
              selective_stats(np.ones((1, n)), wrong, order, starts, coverages, risks).items()}
    draws: dict[str, list[np.ndarray]] = {key: [] for key in values}
    if resamples:
        rng = metric_stream(seed, "selective", conditions)
        for rows in bootstrap_resamples(n, rng, resamples):
            offsets = (np.arange(len(rows)) * n)[:, None]
            weights = np.bincount((rows + offsets).ravel(),
                                  minlength=len(rows) * n).reshape(len(rows), n)
            for key, v in selective_stats(weights, wrong, order, starts, coverages,
                                          risks).items():
                draws[key].append(v)
    shapes: list[tuple[str, str, dict[str, Any], bool]] = [
        ("aurc", "aurc", {}, False), ("augrc", "augrc", {}, False)]
    shapes += [(f"selective_risk@{c!r}", "selective_risk", {"coverage": c}, False)
               for c in coverages]
    shapes += [(f"coverage_at_risk@{r!r}", "coverage_at_risk", {"risk": r}, True)
               for r in risks]
    shares = _share_intervals(wrong, order, starts, coverages, risks)
    metrics = []
    for key, name, extra, higher in shapes:
        low = high = None
        if resamples:
            low, high = percentile_interval(np.concatenate(draws[key]))
            if key in shares:
                low, high = min(low, shares[key][0]), max(high, shares[key][1])
        metrics.append(Metric(name, values[key], n, higher, {**conditions, **extra}, low, high))
    return metrics


def _share_intervals(wrong: np.ndarray, order: np.ndarray, starts: np.ndarray,
                     coverages: list[float], risks: list[float]
                     ) -> dict[str, tuple[float, float]]:
    """The Wilson interval (percent) of each share row at the data's own operating point:
    errors among the accepted (`selective_risk`), accepted among all (`coverage_at_risk`)."""
    _, k, e = curve_counts(np.ones((1, wrong.size)), wrong, order, starts)
    k, e, n = k[0], e[0], wrong.size
    out = {}
    for c in coverages:
        first = int(np.argmax(k >= max(np.ceil(c * n / 100.0 - COVERAGE_EPS), 1.0)))
        low, high = wilson_interval(int(e[first]), int(k[first]))
        out[f"selective_risk@{c!r}"] = (100.0 * low, 100.0 * high)
    for r in risks:
        accepted = int(np.where(100.0 * e <= r * k, k, 0.0).max())
        low, high = wilson_interval(accepted, n)
        out[f"coverage_at_risk@{r!r}"] = (100.0 * low, 100.0 * high)
    return out


@register_metric("selective", "risk_coverage")
def risk_coverage(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`aurc`, `augrc`, `selective_risk` per coverage, `coverage_at_risk` per risk, per scorer."""
    rows = []
    for scorer in params["scorers"]:
        where = {"scorer": scorer}
        table = records.one(**where)
        rows += selective_metrics(table["correct"], table["confidence"], params["coverages"],
                                  params["risks"], where, seed, params["bootstrap"])
    return rows
