"""Metrics of the attack tasks (see `benchmark.tasks.attacks` for the rows' definitions):
fixed-budget errors and flags, minimal-perturbation norms, and the model's sanity flags."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from scipy import stats

from benchmark.records import Records, SampleTable
from benchmark.reductions.core import MetricFn, register_metric
from benchmark.stats import Metric


def not_monotone(eps: Sequence[float], errors: Sequence[float]) -> bool:
    """True when the error at some eps is below the error at a smaller eps."""
    ordered = [err for _, err in sorted(zip(eps, errors, strict=True))]
    return any(later < earlier for earlier, later in pairwise(ordered))


def _model_table(records: Records) -> SampleTable:
    """The one table measured under no eps: the model's per-sample observations."""
    found = [t for t in records if "eps" not in t.conditions]
    if len(found) != 1:
        raise ValueError(f"attack records hold {len(found)} tables without an eps, not one")
    return found[0]


def _errors(table: SampleTable, column: str = "correct") -> int:
    """How many samples of `table` are not hit in `column`."""
    return len(table) - int(np.count_nonzero(table[column]))


def _model_flags(table: SampleTable) -> list[Metric]:
    """flag_randomized, flag_softmax_output and (white-box) zero_grad_rate, flag_zero_grad from
    the model table, under its conditions. A zero gradient counts on clean hits only."""
    n, conditions = len(table), table.conditions
    metrics = [
        Metric("flag_randomized", float(bool(table["randomized"].any())), n, False,
               dict(conditions)),
        Metric("flag_softmax_output", float(bool(table["softmax_output"].all())), n, False,
               dict(conditions)),
    ]
    if "zero_grad" in table.columns:
        zero_grad = int(np.count_nonzero(table["zero_grad"] & table["correct"]))
        metrics += [Metric.rate("zero_grad_rate", zero_grad, n, conditions=conditions),
                    Metric("flag_zero_grad", float(zero_grad > 0), n, False, dict(conditions))]
    return metrics


def _reduce_fixed(records: Records, params: dict[str, Any], attack: str, compared: bool
                  ) -> list[Metric]:
    """A fixed-budget task's metrics: per eps `top1_err`, `top5_err` (with that column),
    `flag_below_clean` and, where FGSM ran beside the task's `attack` (`compared`, the tables
    then tagged with `attack`), `fgsm_top1_err` and `flag_below_fgsm`; then
    `flag_not_monotone` and the model flags, under the model table's conditions."""
    model = _model_table(records)
    base, n = model.conditions, len(model)
    clean_errors = _errors(model)
    budgets, metrics, errors = [float(v) for v in params["eps"]], [], []
    for eps in budgets:
        at = {"eps": eps, **base}
        own = records.one(**at, **({"attack": attack} if compared else {}))
        top1 = _errors(own)
        errors.append(top1)  # counts over the same points: ordered as the rates are
        metrics.append(Metric.rate("top1_err", top1, n, conditions=at))
        if "correct_top5" in own.columns:
            metrics.append(Metric.rate("top5_err", _errors(own, "correct_top5"), n,
                                       conditions=at))
        metrics.append(Metric("flag_below_clean",
                              float(_errors(own, "adv_correct") < clean_errors), n, False,
                              dict(at)))
        if compared:
            fgsm_top1 = _errors(records.one(**at, attack="fgsm"))
            metrics += [Metric.rate("fgsm_top1_err", fgsm_top1, n, conditions=at),
                        Metric("flag_below_fgsm", float(top1 < fgsm_top1), n, False, dict(at))]
    metrics.append(Metric("flag_not_monotone", float(not_monotone(budgets, errors)), n,
                          False, dict(base)))
    return metrics + _model_flags(model)


def minimal_norm(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """A minimal attack's metrics from its table: `median_norm`, `fail_rate` (norm +inf),
    `top1_err` at each eps (norm <= eps), then the model flags."""
    table = _model_table(records)
    distances, n, base = table["perturbation_norm"], len(table), table.conditions
    metrics = [_median_norm(distances, base),
               Metric.rate("fail_rate", int(np.count_nonzero(np.isinf(distances))), n,
                           conditions=base)]
    metrics += [Metric.rate("top1_err", int(np.count_nonzero(distances <= e)), n,
                            conditions={"eps": e, **base}) for e in map(float, params["eps"])]
    return metrics + _model_flags(table)


def _median_norm(distances: np.ndarray, conditions: dict[str, Any]) -> Metric:
    """`median_norm`: the lower median (as `torch.median`) with its order-statistic interval.

    [x_(k), x_(n+1-k)] (1-based order statistics), k the largest with
    P(Binomial(n, 1/2) < k) < 2.5 %, covers the median with probability >= 95 % whatever the
    distribution, ties included. Left out where k < 1 (n < 6) or the upper bound is +inf.
    """
    ordered = np.sort(distances)
    n = len(ordered)
    median = float(ordered[(n - 1) // 2])
    k = int(stats.binom.ppf(0.025, n, 0.5))  # smallest k with P(B <= k) >= 2.5 %
    if k < 1 or not math.isfinite(ordered[n - k]):
        return Metric("median_norm", median, n, True, dict(conditions))
    return Metric("median_norm", median, n, True, dict(conditions), float(ordered[k - 1]),
                  float(ordered[n - k]))



def _fixed(attack: str | None, compared: bool) -> MetricFn:
    """The metric function of a fixed-budget task whose own attack is `attack` (None: named by
    the `attack` parameter), FGSM compared beside it when `compared`."""

    def robust_err(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
        """Top-1 / top-5 error per eps and the attack flags (`_reduce_fixed`)."""
        return _reduce_fixed(records, params, attack or params["attack"], compared)

    return robust_err


# ifgsm and pgd run FGSM beside their own attack; `attack` and `transfer` name theirs.
for _task, _attack, _compared in (("fgsm", "fgsm", False), ("ifgsm", "ifgsm", True),
                                  ("pgd", "pgd", True), ("attack", None, False),
                                  ("transfer", None, False)):
    register_metric(_task, "robust_err")(_fixed(_attack, _compared))
for _task in ("deepfool", "cw", "ddn"):
    register_metric(_task, "minimal_norm")(minimal_norm)
