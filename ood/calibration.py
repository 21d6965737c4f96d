"""Calibration metrics (ECE, MCE, adaptive ECE, NLL, Brier) and temperature scaling, as pure
functions over numpy arrays.

All results are fractions in [0, 1] (Brier: [0, 2]); callers convert to percent. Binning follows
Guo et al. 2017's reference: bin i of n is (edges[i], edges[i + 1]] with
``edges = np.linspace(0, 1, n + 1)``, so a confidence equal to an inner edge falls in the lower
bin, 1.0 in the last bin, and 0.0 (impossible for a top label) is kept in the first bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar

__all__ = [
    "ReliabilityBins",
    "adaptive_ece",
    "brier",
    "brier_per_sample",
    "ece",
    "fit_temperature",
    "mce",
    "nll",
    "nll_per_sample",
    "reliability_bins",
    "resampled_calibration_errors",
    "softmax",
    "top_label",
]


@dataclass(frozen=True, eq=False)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram; empty bins have NaN confidence and accuracy."""

    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    count: NDArray[np.int64]


def _check_n_bins(n_bins: int) -> None:
    """Reject a bin count that is not a positive integer."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")


def _check_top_label(
    confidences: ArrayLike, correct: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate top-label confidences in [0, 1] and 0/1 correctness; return both as float64."""
    conf = np.asarray(confidences, dtype=np.float64)
    corr = np.asarray(correct)
    if conf.ndim != 1:
        raise ValueError(f"confidences must be 1-D, got shape {conf.shape}")
    if corr.shape != conf.shape:
        raise ValueError(
            f"correct must have the shape of confidences {conf.shape}, got {corr.shape}"
        )
    if conf.size == 0:
        raise ValueError("confidences is empty; calibration needs at least one sample")
    if not np.all(np.isfinite(conf)) or conf.min() < 0.0 or conf.max() > 1.0:
        raise ValueError("confidences must be finite and lie in [0, 1]")
    corr = corr.astype(np.float64)
    if not np.all((corr == 0.0) | (corr == 1.0)):
        raise ValueError("correct must hold only booleans or 0/1 values")
    return conf, corr


def _check_labels(labels: ArrayLike, n_samples: int, n_classes: int) -> NDArray[np.intp]:
    """Validate integer class labels of length n_samples in [0, n_classes)."""
    lab = np.asarray(labels)
    if lab.shape != (n_samples,):
        raise ValueError(f"labels must have shape ({n_samples},), got {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
    if lab.min() < 0 or lab.max() >= n_classes:
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got min {lab.min()} and max {lab.max()}"
        )
    return lab.astype(np.intp)


def _check_scores(scores: ArrayLike, name: str) -> NDArray[np.float64]:
    """Validate a non-empty, finite (N, K) score matrix; return it as float64."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, K) with N, K >= 1, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _log_softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise log-softmax via log-sum-exp with the row max subtracted (no overflow)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: ArrayLike) -> NDArray[np.float64]:
    """Row-wise softmax of (N, K) logits in float64, stable for large magnitudes."""
    return np.exp(_log_softmax(_check_scores(logits, "logits")))


def top_label(
    scores: ArrayLike, *, from_logits: bool = True
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Top-label confidence and class from (N, K) logits, or probabilities when not from_logits."""
    probs = softmax(scores) if from_logits else _check_scores(scores, "probs")
    pred = probs.argmax(axis=1)
    return probs[np.arange(probs.shape[0]), pred], pred


def reliability_bins(
    confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15
) -> ReliabilityBins:
    """Equal-width reliability bins (i/n, (i+1)/n] over top-label confidences, as in Guo et al."""
    _check_n_bins(n_bins)
    conf, corr = _check_top_label(confidences, correct)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" gives j with edges[j-1] < c <= edges[j], so bin j-1 matches Guo's
    # `c > lower & c <= upper`; the clip keeps c == 0.0 in the first bin.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    corr_sum = np.bincount(idx, weights=corr, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        mean_acc = np.where(count > 0, corr_sum / count, np.nan)
    return ReliabilityBins(edges[:-1], edges[1:], mean_conf, mean_acc, count)


def _weighted_gap(bins: ReliabilityBins) -> float:
    """Sum over non-empty bins of (count / N) * |accuracy - confidence|."""
    full = bins.count > 0
    weights = bins.count[full] / bins.count.sum()
    return float(np.sum(weights * np.abs(bins.accuracy[full] - bins.confidence[full])))


def ece(confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error (top-label, L1, equal-width bins, weighted by bin size)."""
    return _weighted_gap(reliability_bins(confidences, correct, n_bins))


def mce(confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest |accuracy - confidence| over non-empty bins."""
    bins = reliability_bins(confidences, correct, n_bins)
    full = bins.count > 0
    return float(np.max(np.abs(bins.accuracy[full] - bins.confidence[full])))


def adaptive_ece(confidences: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> float:
    """ECE over equal-mass bins: n_bins groups of sorted confidences, sizes differing by <= 1.

    Samples are ranked by a stable sort of confidence and cut by rank (``np.array_split``, larger
    groups first); ties are not kept together, so equal confidences may straddle a group boundary,
    and among them the one earlier in the input goes to the lower group. With N < n_bins the
    surplus groups are empty and skipped.
    """
    _check_n_bins(n_bins)
    conf, corr = _check_top_label(confidences, correct)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for group in np.array_split(order, n_bins):
        if group.size:
            total += abs(corr[group].sum() - conf[group].sum())
    return total / conf.size


def nll_per_sample(logits: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
    """Cross-entropy of each row of (N, K) logits against its integer label, in nats."""
    log_probs = _log_softmax(_check_scores(logits, "logits"))
    lab = _check_labels(labels, log_probs.shape[0], log_probs.shape[1])
    return -log_probs[np.arange(lab.size), lab]


def nll(logits: ArrayLike, labels: ArrayLike) -> float:
    """Mean cross-entropy of (N, K) logits against integer labels, in nats (float64, stable)."""
    return float(np.mean(nll_per_sample(logits, labels)))


def brier_per_sample(probs: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
    """Each sample's multi-class Brier score sum_k (p_k - onehot_k)^2, in [0, 2]."""
    p = _check_scores(probs, "probs")
    if p.min() < 0.0 or p.max() > 1.0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(
            "probs must lie in [0, 1] with rows summing to 1 (pass softmax output, not logits)"
        )
    lab = _check_labels(labels, p.shape[0], p.shape[1])
    diff = p.copy()
    diff[np.arange(lab.size), lab] -= 1.0
    return np.sum(diff * diff, axis=1)


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multi-class Brier score: mean over samples of sum_k (p_k - onehot_k)^2, in [0, 2].

    Not divided by the number of classes K (some papers do), nor halved (sklearn's binary
    ``brier_score_loss`` is half this value for K = 2).
    """
    return float(np.mean(brier_per_sample(probs, labels)))


def resampled_calibration_errors(
    confidences: ArrayLike, correct: ArrayLike, rows: NDArray[np.intp], n_bins: int = 15
) -> dict[str, NDArray[np.float64]]:
    """ECE, MCE and adaptive ECE of each resample, vectorized over resamples.

    Row r of ``rows`` holds the sample indices of resample r (a bootstrap draw); entry r of each
    result equals ``ece(confidences[rows[r]], correct[rows[r]], n_bins)`` and likewise for
    ``mce`` and ``adaptive_ece``. An equal-width bin depends only on a sample's confidence, so
    the bins are found once and each resample only recounts them.
    """
    _check_n_bins(n_bins)
    conf, corr = _check_top_label(confidences, correct)
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"rows must have shape (resamples, N) with N >= 1, got {rows.shape}")
    count, size = rows.shape
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    flat = (np.arange(count)[:, None] * n_bins + bin_of[rows]).ravel()
    shape = (count, n_bins)
    members = np.bincount(flat, minlength=count * n_bins).reshape(shape)
    gap = np.abs(np.bincount(flat, weights=corr[rows].ravel(), minlength=count * n_bins)
                 - np.bincount(flat, weights=conf[rows].ravel(), minlength=count * n_bins)
                 ).reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_gap = np.where(members > 0, gap / members, -np.inf)
    ranked = np.take_along_axis(rows, np.argsort(conf[rows], axis=1, kind="stable"), axis=1)
    diff = np.cumsum(corr[ranked] - conf[ranked], axis=1)
    cuts = np.cumsum([len(part) for part in np.array_split(np.arange(size), n_bins)]) - 1
    group_sums = np.diff(np.concatenate([np.zeros((count, 1)), diff[:, cuts]], axis=1), axis=1)
    return {"ece": gap.sum(axis=1) / size, "mce": bin_gap.max(axis=1),
            "adaptive_ece": np.abs(group_sums).sum(axis=1) / size}


def fit_temperature(logits: ArrayLike, labels: ArrayLike,
                    bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """Temperature T minimizing the NLL of logits / T (Guo et al. 2017), fit on held-out data.

    NLL is convex in 1 / T, so a bounded scalar search over 1 / T in [1 / bounds[1], 1 / bounds[0]]
    finds the global minimum on that interval; a result at a bound means the optimum lies beyond.
    """
    z = _check_scores(logits, "logits")
    lab = _check_labels(labels, z.shape[0], z.shape[1])
    low, high = bounds
    if not 0.0 < low < high:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    true_logit = z[np.arange(lab.size), lab]

    def nll_at(beta: float) -> float:
        scaled = beta * z
        top = scaled.max(axis=1)
        lse = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
        return float(np.mean(lse - beta * true_logit))

    result = minimize_scalar(nll_at, bounds=(1.0 / high, 1.0 / low), method="bounded",
                             options={"xatol": 1e-10})
    return float(1.0 / result.x)
