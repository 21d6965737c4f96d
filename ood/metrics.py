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
  ``auroc_ci``: DeLong et al. (1988)'s nonparametric 95 % interval (normal approximation with the
  structural-component variance), clipped to [0, 1].
- ``aupr_in`` / ``aupr_out``: average precision (the step-wise sum of sklearn's
  ``average_precision_score``, not a trapezoid) with ID positive and score as is, resp. OOD
  positive and score negated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "METRICS",
    "OODMetrics",
    "aupr_in",
    "aupr_out",
    "auroc",
    "auroc_ci",
    "detection_acc",
    "fpr_at_tpr95_ood_positive",
    "ood_metrics",
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
    """Cumulative counts at each distinct score taken as threshold, from the highest down.

    ``tp[k]`` / ``fp[k]``: ID / OOD samples scoring >= the k-th highest distinct score (k >= 1);
    index 0 is the "accept nothing" point (0, 0), the last index accepts everything.
    """

    tp: NDArray[np.float64]
    fp: NDArray[np.float64]
    n_id: int
    n_ood: int


def _curve(id_scores: ArrayLike, ood_scores: ArrayLike) -> _Curve:
    """Sort all scores once and count ID / OOD samples above each distinct threshold."""
    s_id, s_ood = _check(id_scores, "id_scores"), _check(ood_scores, "ood_scores")
    scores = np.concatenate([s_id, s_ood])
    is_id = np.concatenate([np.ones(s_id.size), np.zeros(s_ood.size)])
    order = np.argsort(scores)[::-1]
    scores, is_id = scores[order], is_id[order]
    # the last position of each run of equal scores: thresholds never split ties
    ends = np.flatnonzero(np.diff(scores) != 0.0)
    ends = np.append(ends, scores.size - 1)
    tp = np.cumsum(is_id)[ends]
    fp = (ends + 1) - tp
    return _Curve(np.concatenate([[0.0], tp]), np.concatenate([[0.0], fp]), s_id.size, s_ood.size)


def _tnr_at_tpr95(c: _Curve) -> float:
    k = int(np.argmax(c.tp / c.n_id >= TPR_LEVEL))
    return 1.0 - c.fp[k] / c.n_ood


def _fpr_at_tpr95_ood_positive(c: _Curve) -> float:
    # OOD-positive thresholds on -score run over the same distinct scores from the lowest up:
    # flagged OOD at the k-th point from the end are those scoring below that point's score.
    tp_out = (c.n_ood - c.fp)[::-1]
    fp_out = (c.n_id - c.tp)[::-1]
    k = int(np.argmax(tp_out / c.n_ood >= TPR_LEVEL))
    return fp_out[k] / c.n_id


def _detection_acc(c: _Curve) -> float:
    return float(np.max(0.5 * (c.tp / c.n_id + 1.0 - c.fp / c.n_ood)))


def _auroc(c: _Curve) -> float:
    # trapezoids between consecutive ROC points; integer counts keep it exact in float64
    area = np.sum(np.diff(c.fp) * (c.tp[1:] + c.tp[:-1])) / 2.0
    return float(area / (c.n_id * c.n_ood))


def _average_precision(tp: NDArray[np.float64], fp: NDArray[np.float64], n_pos: int) -> float:
    """Sum over thresholds of (recall step) * precision, counts starting at the (0, 0) point."""
    tp, fp = tp[1:], fp[1:]
    steps = np.diff(np.concatenate([[0.0], tp]))
    return float(np.sum(steps * tp / (tp + fp)) / n_pos)


def _aupr_in(c: _Curve) -> float:
    return _average_precision(c.tp, c.fp, c.n_id)


def _aupr_out(c: _Curve) -> float:
    return _average_precision((c.n_ood - c.fp)[::-1], (c.n_id - c.tp)[::-1], c.n_ood)


_FUNCTIONS = {
    "tnr_at_tpr95": _tnr_at_tpr95,
    "auroc": _auroc,
    "aupr_in": _aupr_in,
    "aupr_out": _aupr_out,
    "detection_acc": _detection_acc,
    "fpr_at_tpr95_ood_positive": _fpr_at_tpr95_ood_positive,
}


def ood_metrics(id_scores: ArrayLike, ood_scores: ArrayLike) -> dict[str, float]:
    """All six metrics (fractions, keys as in `METRICS`) from one sort of the scores."""
    curve = _curve(id_scores, ood_scores)
    return {name: float(fn(curve)) for name, fn in _FUNCTIONS.items()}


def tnr_at_tpr95(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """ID positive: share of OOD rejected at the first threshold keeping >= 95 % of ID."""
    return float(_tnr_at_tpr95(_curve(id_scores, ood_scores)))


def fpr_at_tpr95_ood_positive(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """OOD positive (OpenOOD's FPR@95): share of ID flagged once >= 95 % of OOD are flagged."""
    return float(_fpr_at_tpr95_ood_positive(_curve(id_scores, ood_scores)))


def detection_acc(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Best balanced accuracy over thresholds: max 0.5 * (TPR + TNR)."""
    return _detection_acc(_curve(id_scores, ood_scores))


def auroc(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Area under the ROC curve: P(ID score > OOD score) + 0.5 * P(tie)."""
    return _auroc(_curve(id_scores, ood_scores))


def _auroc_ci(c: _Curve, level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if c.n_id < 2 or c.n_ood < 2:
        return float("nan"), float("nan")
    id_at, ood_at = np.diff(c.tp), np.diff(c.fp)  # samples at each distinct score
    v10 = (c.n_ood - c.fp[1:] + 0.5 * ood_at) / c.n_ood  # of an ID sample at that score
    v01 = (c.tp[:-1] + 0.5 * id_at) / c.n_id  # of an OOD sample at that score
    area = float(np.sum(id_at * v10) / c.n_id)
    variance = (np.sum(id_at * (v10 - area) ** 2) / (c.n_id - 1) / c.n_id
                + np.sum(ood_at * (v01 - area) ** 2) / (c.n_ood - 1) / c.n_ood)
    half = NormalDist().inv_cdf(0.5 + level / 2) * float(np.sqrt(variance))
    return max(0.0, area - half), min(1.0, area + half)


def auroc_ci(id_scores: ArrayLike, ood_scores: ArrayLike, level: float = 0.95
             ) -> tuple[float, float]:
    """DeLong's interval for the AUROC: AUROC -/+ z * sqrt(var(V10) / n_id + var(V01) / n_ood).

    V10_i = share of OOD scores below ID score i (ties one half), V01_j = share of ID scores
    above OOD score j; sample variances (ddof 1), from the one sort of `ood_metrics`. With a
    single ID or OOD sample the variance is undefined and the interval is (nan, nan).
    """
    return _auroc_ci(_curve(id_scores, ood_scores), level)


def aupr_in(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Average precision with ID as the positive class, higher score = more ID."""
    return _aupr_in(_curve(id_scores, ood_scores))


def aupr_out(id_scores: ArrayLike, ood_scores: ArrayLike) -> float:
    """Average precision with OOD as the positive class, lower score = more OOD."""
    return _aupr_out(_curve(id_scores, ood_scores))


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
