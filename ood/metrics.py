"""OOD detection metrics, exact over sorted scores with ties, as fractions in [0, 1].

Convention: a score is higher for samples that look more in-distribution (ID). ID is the positive
class (ODIN, Lee et al. 2018, CutMix) unless a name says otherwise:

- ``tnr_at_tpr95``: threshold rule "first reach": t = the highest score such that the share of ID
  samples scoring >= t is at least 95 %; a sample scoring exactly t is accepted as ID. The metric
  is the share of OOD samples scoring < t. It is sklearn's
  ``1 - fpr[argmax(tpr >= 0.95)]`` of ``roc_curve(is_id, score, drop_intermediate=False)``. ODIN's
  released code instead averages over a grid of thresholds whose TPR lies in [94.95, 95.05] %, and
  Lee et al.'s picks the sample-wise ROC point nearest to 95 %; on continuous scores all three
  agree up to one sample.
- ``fpr_at_tpr95_ood_positive``: OpenOOD v1.5 / pytorch-ood's "FPR@95", a different number: OOD
  positive, score negated; the share of ID samples flagged OOD at the first threshold that flags
  at least 95 % of the OOD samples (``fpr[argmax(tpr >= 0.95)]`` of ``roc_curve(is_ood, -score)``).
- ``detection_acc``: max over all thresholds (the distinct scores, plus "accept none") of
  0.5 * (TPR + TNR) = 1 - min (FNR + FPR) / 2; a threshold never splits tied samples.
- ``auroc``: area under the ROC curve; a tied ID/OOD pair counts one half (Mann-Whitney U).
- ``aupr_in`` / ``aupr_out``: average precision (the step-wise sum of sklearn's
  ``average_precision_score``, not a trapezoid) with ID positive and score as is, resp. OOD
  positive and score negated.

Intervals: ``bootstrap_ood_metrics`` gives stratified bootstrap replicates of all six (ID and
OOD resampled separately, one ID resample shared by every OOD set of a replicate) and
``percentile_interval`` their percentile interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from benchmark.stats import percentile_interval

__all__ = [
    "METRICS",
    "OODMetrics",
    "aupr_in",
    "aupr_out",
    "auroc",
    "bootstrap_ood_metrics",
    "detection_acc",
    "fpr_at_tpr95_ood_positive",
    "ood_metrics",
    "percentile_interval",
    "tnr_at_tpr95",
]

TPR_LEVEL = 0.95
# name -> higher is better, in the order ood_metrics returns them
METRICS: dict[str, bool] = {
    "tnr_at_tpr95": True,
    "auroc": True,
    "aupr_in": True,
    "aupr_out": True,
    "detection_acc": True,
    "fpr_at_tpr95_ood_positive": False,
}
_CHUNK_ELEMENTS = 2**15  # bootstrap: resamples x thresholds per chunk (256 kB: in cache)


def _check(scores: ArrayLike, name: str) -> NDArray[np.float64]:
    """A non-empty, finite, 1-D float64 copy of `scores`."""
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty; OOD metrics need at least one ID and one OOD score")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return arr


@dataclass(frozen=True)
class _Curve:
    """ID / OOD counts (``tp`` / ``fp``) scoring >= each threshold, the distinct scores from the
    highest down, after the "accept nothing" point (0, 0); the last point accepts everything.

    Counts run along the last axis; a resampled curve has one row per resample.
    """

    tp: NDArray[np.float64]
    fp: NDArray[np.float64]
    n_id: int
    n_ood: int


def _counts_above(s_id: NDArray[np.float64], s_ood: NDArray[np.float64]
                  ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """How many ID / OOD scores are >= each distinct score, from the highest down, with a
    leading 0: one sort of all scores; thresholds never split a run of equal scores."""
    scores = np.concatenate([s_id, s_ood])
    order = np.argsort(scores)[::-1]
    # the last position of each run of equal scores
    ends = np.append(np.flatnonzero(np.diff(scores[order]) != 0.0), scores.size - 1)
    id_above = np.concatenate([[0], np.cumsum(order < s_id.size)[ends]])
    return id_above, np.concatenate([[0], ends + 1]) - id_above


def _curve(id_scores: ArrayLike, ood_scores: ArrayLike) -> _Curve:
    """The exact curve of the samples as given."""
    s_id, s_ood = _check(id_scores, "id_scores"), _check(ood_scores, "ood_scores")
    id_above, ood_above = _counts_above(s_id, s_ood)
    return _Curve(id_above.astype(np.float64), ood_above.astype(np.float64), s_id.size,
                  s_ood.size)


def _needed(n: int) -> int:
    """The fewest of n samples whose share reaches TPR_LEVEL (counts are whole numbers)."""
    return int(np.argmax(np.arange(n + 1) / n >= TPR_LEVEL))


def _at(values: NDArray[np.float64], k: NDArray[np.intp]) -> NDArray[np.float64]:
    """`values[..., k]` with one index per row (`k` keeps a trailing axis of length 1)."""
    return np.take_along_axis(values, k, axis=-1)[..., 0]


def _dot(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sum of a * b along the last axis, without a temporary for the product."""
    return np.einsum("...i,...i->...", a, b)


def _precision_sum(steps: NDArray[np.float64], positives: NDArray[np.float64],
                   accepted: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sum of (recall step) * positives / accepted along the last axis; overwrites `accepted`.

    A point accepting nothing (a threshold no resampled sample reaches) has no precision; its
    step is 0 and max(accepted, 1) makes its term 0 / 1.
    """
    np.maximum(accepted, 1.0, out=accepted)
    np.divide(positives, accepted, out=accepted)
    return _dot(steps, accepted)


def _metrics(c: _Curve) -> dict[str, NDArray[np.float64]]:
    """The six metrics (fractions) along the last axis of a curve, sharing the work."""
    tp, fp, n_id, n_ood = c.tp, c.fp, c.n_id, c.n_ood
    d_tp, d_fp = np.diff(tp, axis=-1), np.diff(fp, axis=-1)
    # ID positive: the first point keeping >= 95 % of ID
    k_id = np.argmax(tp >= _needed(n_id), axis=-1, keepdims=True)
    # OOD positive, thresholds on -score from the lowest score up: the first flagging >= 95 %
    # of OOD is the last point (from the top) with that many OOD below it
    k_ood = np.argmax(fp > n_ood - _needed(n_ood), axis=-1, keepdims=True) - 1
    # TPR - FPR in whole counts: (tp * n_ood - fp * n_id) / (n_id * n_ood)
    gap = tp * n_ood
    gap -= fp * n_id
    accepted = tp + fp
    # OOD positive: the point below the k-th threshold flags n_ood - fp_k OOD among
    # n - accepted_k samples; its recall step is fp_k+1 - fp_k
    aupr_out = _precision_sum(d_fp, n_ood - fp[..., :-1], (n_id + n_ood) - accepted[..., :-1])
    return {
        "tnr_at_tpr95": 1.0 - _at(fp, k_id) / n_ood,
        # trapezoids fp-step * (tp_k + tp_k+1) / 2; whole counts keep it exact in float64
        "auroc": (_dot(d_fp, tp[..., :-1]) + _dot(d_fp, d_tp) / 2.0) / (n_id * n_ood),
        "aupr_in": _precision_sum(d_tp, tp[..., 1:], accepted[..., 1:]) / n_id,
        "aupr_out": aupr_out / n_ood,
        "detection_acc": 0.5 + 0.5 * np.max(gap, axis=-1) / (n_id * n_ood),
        "fpr_at_tpr95_ood_positive": (n_id - _at(tp, k_ood)) / n_id,
    }


def ood_metrics(id_scores: ArrayLike, ood_scores: ArrayLike) -> dict[str, float]:
    """All six metrics (fractions, keys as in `METRICS`) from one sort of the scores."""
    return {name: float(value) for name, value in _metrics(_curve(id_scores, ood_scores)).items()}


def tnr_at_tpr95(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """ID positive: share of OOD rejected at the first threshold keeping >= 95 % of ID."""
    return ood_metrics(id_scores, ood_scores)["tnr_at_tpr95"]


def fpr_at_tpr95_ood_positive(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """OOD positive (OpenOOD's FPR@95): share of ID flagged once >= 95 % of OOD are flagged."""
    return ood_metrics(id_scores, ood_scores)["fpr_at_tpr95_ood_positive"]


def detection_acc(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Best balanced accuracy over thresholds: max 0.5 * (TPR + TNR)."""
    return ood_metrics(id_scores, ood_scores)["detection_acc"]


def auroc(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Area under the ROC curve: P(ID score > OOD score) + 0.5 * P(tie)."""
    return ood_metrics(id_scores, ood_scores)["auroc"]


def aupr_in(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Average precision with ID as the positive class, higher score = more ID."""
    return ood_metrics(id_scores, ood_scores)["aupr_in"]


def aupr_out(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Average precision with OOD as the positive class, lower score = more OOD."""
    return ood_metrics(id_scores, ood_scores)["aupr_out"]


def _ranks(scores: NDArray[np.float64]) -> NDArray[np.intp]:
    """Each sample's position when sorted from the highest score down (ties in any order)."""
    positions = np.empty(scores.size, dtype=np.intp)
    positions[np.argsort(scores)[::-1]] = np.arange(scores.size)
    return positions


def _resampled_above(rng: np.random.Generator, ranks: NDArray[np.intp], count: int
                     ) -> NDArray[np.float64]:
    """`count` resamples (n of n, with replacement): row r, column i = how many resampled
    samples are among the i highest-scoring, i = 0..n.

    Row r's indices are the r-th ``rng.integers(0, n, n)`` draw (one ``(count, n)`` draw
    yields the same numbers as `count` draws of n), so they do not depend on chunking.
    """
    n = ranks.size
    picked = ranks[rng.integers(0, n, (count, n))]
    picked += (np.arange(count) * n)[:, None]  # row r counts in bins r*n .. r*n + n-1
    multiplicities = np.bincount(picked.ravel(), minlength=count * n).reshape(count, n)
    above = np.zeros((count, n + 1))
    np.cumsum(multiplicities, axis=1, out=above[:, 1:])
    return above


def bootstrap_ood_metrics(id_scores: ArrayLike, ood_sets: Sequence[ArrayLike],
                          resamples: int = 1000, seed: int = 0
                          ) -> dict[str, NDArray[np.float64]]:
    """Stratified bootstrap replicates of the six metrics: name -> (resamples, len(ood_sets)).

    Replicate r resamples the ID scores and each OOD set separately, with replacement (class
    sizes stay fixed), and uses the same ID resample for every set, so that a summary over sets
    (their mean) has replicates too. Resample r takes its indices from the r-th
    ``integers(0, n, n)`` call of ``np.random.default_rng([seed, 0])`` for ID and of
    ``default_rng([seed, 1 + j])`` for set j. Each class is sorted once; a resample's counts at
    every threshold are cumulative sums of its multiplicities in that order, so a replicate is
    exactly `ood_metrics` of the resampled scores. Resamples go a chunk at a time (bounded
    memory).
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not ood_sets:
        raise ValueError("no OOD sets to bootstrap")
    s_id = _check(id_scores, "id_scores")
    sets = [_check(scores, "ood_scores") for scores in ood_sets]
    above = [_counts_above(s_id, s_ood) for s_ood in sets]
    id_ranks, set_ranks = _ranks(s_id), [_ranks(s_ood) for s_ood in sets]
    id_rng = np.random.default_rng([seed, 0])
    set_rngs = [np.random.default_rng([seed, 1 + j]) for j in range(len(sets))]
    widest = s_id.size + max(s_ood.size for s_ood in sets) + 1
    chunk = max(1, min(resamples, _CHUNK_ELEMENTS // widest))
    out = {name: np.empty((resamples, len(sets))) for name in METRICS}
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        id_above = _resampled_above(id_rng, id_ranks, count)
        for j, ((id_at, ood_at), ranks, rng) in enumerate(zip(above, set_ranks, set_rngs,
                                                                strict=True)):
            ood_above = _resampled_above(rng, ranks, count)
            curve = _Curve(id_above[:, id_at], ood_above[:, ood_at], s_id.size, ranks.size)
            for name, values in _metrics(curve).items():
                out[name][start:start + count, j] = values
    return out


@dataclass
class OODMetrics:
    """Streaming accumulator over batches of ID and OOD scores; `compute` is `ood_metrics`."""

    _id: list[NDArray[np.float64]] = field(default_factory=list, repr=False)
    _ood: list[NDArray[np.float64]] = field(default_factory=list, repr=False)

    def update(self, scores: ArrayLike, *, is_id: bool) -> None:
        """Add a batch of scores, all ID (`is_id=True`) or all OOD."""
        (self._id if is_id else self._ood).append(np.asarray(scores, dtype=np.float64).ravel())

    def compute(self) -> dict[str, float]:
        """The six metrics over everything added so far."""
        empty = np.empty(0)
        return ood_metrics(np.concatenate(self._id or [empty]),
                           np.concatenate(self._ood or [empty]))

    def reset(self) -> None:
        """Forget all scores."""
        self._id.clear()
        self._ood.clear()
