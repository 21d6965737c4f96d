"""Metrics of the `autoattack` task (rows defined in `benchmark.tasks.autoattack`).

- `clean_err` (conditions {space, norm}): the clean top-1 error of the attacked points.
- per eps: `top1_err`, the robust error (worst case over the ensemble, clean mistakes included);
  `attack_err` per (eps, `attack`): the error after each stage in order (cumulative, so the last
  stage's equals `top1_err`); `flag_square` (AutoAttack's check: Square, black-box, lowered the
  robust accuracy by more than 0.2 points below the gradient stages'; with a nested sweep, at a
  larger eps the points carried from a smaller one keep the stage that broke them there, so
  `attack_err` and this flag count them too).
- `flag_not_monotone` (an independent sweep whose error drops as eps grows), `flag_dynamic`
  (AutoAttack's check: the forward pass computes gradients), and the model flags of every attack
  task (`flag_randomized`, `flag_softmax_output`, `zero_grad_rate`, `flag_zero_grad`).
All rates carry their Wilson interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.records import Records
from benchmark.reductions.attacks import _errors, _model_flags, _model_table, not_monotone
from benchmark.reductions.core import register_metric
from benchmark.stats import Metric

SQUARE_ALPHA = 0.002  # AutoAttack's check_square_sr tolerance on robust accuracy


def stage_accuracy(broken_by: np.ndarray, attacks: list[str]) -> dict[str, float]:
    """AutoAttack's robust accuracy after each stage: `clean`, then each attack in order."""
    n = len(broken_by)
    accuracy = {"clean": float(np.count_nonzero(broken_by != 0)) / n}
    for stage, attack in enumerate(attacks, start=1):
        accuracy[attack] = float(np.count_nonzero((broken_by < 0) | (broken_by > stage))) / n
    return accuracy


def square_flag(accuracy: dict[str, float]) -> bool:
    """AutoAttack's `check_square_sr`: Square's accuracy is more than 0.2 points below the
    lowest of the other entries (in pyautoattack's own accounting, so only a Square run last can
    raise it)."""
    if "square" not in accuracy or len(accuracy) <= 2:
        return False
    others = min(value for name, value in accuracy.items() if name != "square")
    return accuracy["square"] < others - SQUARE_ALPHA


@register_metric("autoattack", "robust_err")
def robust_err(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """Clean, robust and per-stage errors with AutoAttack's flags and the model flags."""
    model = _model_table(records)
    base, n = model.conditions, len(model)
    attacks = list(records.facts["attacks"])
    metrics = [Metric.rate("clean_err", _errors(model), n, conditions=base)]
    budgets, errors = [float(v) for v in params["eps"]], []
    for eps in budgets:
        at = {"eps": eps, **base}
        broken_by = records.one(**at)["broken_by"]
        errors.append(int(np.count_nonzero(broken_by >= 0)))
        metrics.append(Metric.rate("top1_err", errors[-1], n, conditions=at))
        for stage, attack in enumerate(attacks, start=1):
            wrong = int(np.count_nonzero((broken_by >= 0) & (broken_by <= stage)))
            metrics.append(Metric.rate("attack_err", wrong, n,
                                       conditions={**at, "attack": attack}))
        metrics.append(Metric("flag_square", float(square_flag(stage_accuracy(
            broken_by, attacks))), n, False, dict(at)))
    metrics += [Metric("flag_not_monotone", float(not_monotone(budgets, errors)), n, False,
                       dict(base)),
                Metric("flag_dynamic", float(bool(records.facts["dynamic"])), n, False,
                       dict(base))]
    return metrics + _model_flags(model)
