"""Rows derived from several units' records: the per-image worst case over a suite's attacks.

`worst_case` / `top1_err` at a budget (space, norm, eps): the share of images that at least one
attack of the suite misclassified within that budget (clean mistakes included), as AutoAttack
reports robust error. Each fixed-budget task (fgsm, ifgsm, pgd, transfer, the generic `attack`,
`autoattack` with its ensemble's worst case) contributes its own attack's table at that eps; each
minimal-perturbation task (deepfool, cw, ddn) of the same space and norm contributes
`perturbation_norm <= eps`. The worst case is taken over the
tasks that attacked the same images as most of them (a task run on another subset, e.g. CW with
`limit`, is left out); the condition `attacks` names the tasks it covers. Wilson interval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from benchmark.records import Records, SampleTable
from benchmark.stats import Metric

if TYPE_CHECKING:
    from benchmark.store import StoredUnit

FIXED_BUDGET = ("fgsm", "ifgsm", "pgd", "transfer", "attack", "autoattack")
MINIMAL = ("deepfool", "cw", "ddn")
ATTACK_TASKS = FIXED_BUDGET + MINIMAL
TASK = "worst_case"


@dataclass(frozen=True)
class DerivedRow:
    """A derived metric of one checkpoint, keyed like a unit (its config hash digests the
    covered units' keys)."""

    checkpoint: str
    sha256: str
    task: str
    config_hash: str
    metric: Metric


def _own_tables(unit: StoredUnit, records: Records) -> Iterable[SampleTable]:
    """A fixed-budget task's tables of its own attack (not its FGSM comparison runs)."""
    for table in records:
        if "eps" not in table.conditions:
            continue
        attack = table.conditions.get("attack")
        if unit.task_type in ("transfer", "attack") or attack is None \
                or attack == unit.task_type:
            yield table


def worst_case(units: Iterable[tuple[tuple[str, str, str, str], StoredUnit, Records]]
               ) -> list[DerivedRow]:
    """The worst-case rows of every checkpoint among `units` (key, unit, records)."""
    by_checkpoint: dict[tuple[str, str], list] = {}
    for key, unit, records in units:
        if unit.task_type in ATTACK_TASKS:
            by_checkpoint.setdefault((key[0], key[1]), []).append((key, unit, records))
    rows = []
    for (name, sha256), attacked in by_checkpoint.items():
        rows += _checkpoint_rows(name, sha256, attacked)
    return rows


def _checkpoint_rows(name: str, sha256: str, attacked: list) -> list[DerivedRow]:
    # per budget (space, norm, eps): (task name, config hash, index, wrong) of each covering task
    budgets: dict[tuple[str, str, float], list[tuple[str, str, np.ndarray, np.ndarray]]] = {}
    minimal = []
    for key, unit, records in attacked:
        if unit.task_type in MINIMAL:  # one table: the norm per image, within any eps
            table = records.tables[0]
            minimal.append((key, table))
            for eps in unit.params["eps"]:
                budgets.setdefault((table.conditions["space"], table.conditions["norm"],
                                    float(eps)), [])
            continue
        for table in _own_tables(unit, records):
            c = table.conditions
            budgets.setdefault((c["space"], c["norm"], float(c["eps"])), []).append(
                (key[2], key[3], table["index"], ~table["correct"].astype(bool)))
    rows = []
    for (space, norm, eps), covering in sorted(budgets.items()):
        covering = covering + [(key[2], key[3], table["index"], table["perturbation_norm"] <= eps)
                               for key, table in minimal
                               if (table.conditions["space"], table.conditions["norm"])
                               == (space, norm)]
        rows.append(_worst(name, sha256, space, norm, eps, covering))
    return rows


def _worst(name: str, sha256: str, space: str, norm: str, eps: float,
           covering: list[tuple[str, str, np.ndarray, np.ndarray]]) -> DerivedRow:
    """The worst case over the covering tasks that attacked the most common image list."""
    lists = [index.tobytes() for _, _, index, _ in covering]
    common = max(lists, key=lambda s: (lists.count(s), len(s)))
    used = [entry for entry, s in zip(covering, lists, strict=True) if s == common]
    wrong = np.logical_or.reduce([task_wrong for *_, task_wrong in used])
    tasks = sorted({task for task, *_ in used})
    digest = hashlib.sha256("|".join(sorted(f"{t}:{c}" for t, c, *_ in used)).encode())
    conditions = {"eps": eps, "space": space, "norm": norm, "attacks": ", ".join(tasks)}
    metric = Metric.rate("top1_err", int(wrong.sum()), len(wrong), conditions=conditions)
    return DerivedRow(name, sha256, TASK, digest.hexdigest()[:16], metric)
