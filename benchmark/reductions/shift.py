"""Metrics of task `shift` (see `benchmark.tasks.shift` for the records): per shift set, top-1
and top-5 error with Wilson intervals, and `gap_err`, its top-1 error minus the clean error of
the same checkpoint, with Newcombe's interval for a difference of independent proportions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmark.records import Records, SampleTable
from benchmark.reductions.core import register_metric
from benchmark.stats import Metric, wilson_interval

CLEAN_SET = "clean"  # `shift_set` of the clean reference tables (a reserved set name)
SUBSET = "class_subset"  # condition of the 200-class sets (`imagenet-a-200`, `imagenet-r-200`)
RATES = (("top1_err", "correct"), ("top5_err", "correct_top5"))


def newcombe_interval(count1: int, n1: int, count2: int, n2: int) -> tuple[float, float]:
    """95 % interval (fractions) of count1 / n1 - count2 / n2 for two independent binomial
    proportions: Newcombe's (1998) hybrid score interval (his method 10), built from the two
    Wilson intervals; e.g. 56/70 - 48/80 gives (0.0524, 0.3339), his Table II."""
    p1, p2 = count1 / n1, count2 / n2
    low1, high1 = wilson_interval(count1, n1)
    low2, high2 = wilson_interval(count2, n2)
    return (p1 - p2 - math.hypot(p1 - low1, high2 - p2),
            p1 - p2 + math.hypot(high1 - p1, p2 - low2))


def _sets(records: Records) -> list[SampleTable]:
    """The shift sets' tables, in the order measured (the clean references left out)."""
    return [table for table in records if table.conditions["shift_set"] != CLEAN_SET]


def _clean(records: Records, class_subset: Any) -> SampleTable | None:
    """The clean reference of a set: all clean images, or for a 200-class set the clean images
    of those classes under the same restriction; None where none was measured."""
    conditions = {"shift_set": CLEAN_SET} | ({} if class_subset is None else
                                             {SUBSET: class_subset})
    try:
        return records.one(**conditions)
    except KeyError:
        return None


def _wrong(table: SampleTable, column: str = "correct") -> int:
    return len(table) - int(np.count_nonzero(table[column]))


@register_metric("shift", "topk_err")
def topk_err(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`top1_err` and `top5_err` (Wilson) of each shift set, under its table's conditions."""
    return [Metric.rate(metric, _wrong(table, column), len(table),
                        conditions=dict(table.conditions))
            for table in _sets(records) for metric, column in RATES if column in table.columns]


@register_metric("shift", "gap_err")
def gap_err(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`gap_err`: a set's top-1 error minus its clean reference's (points; positive = worse
    under shift), n = both sets' images. The two are disjoint samples of images scored by one
    fixed model, so independent proportions: Newcombe's interval. No row where the clean
    reference holds no image (a 200-class set under a `--limit` that drew none of its classes)."""
    rows = []
    for table in _sets(records):
        reference = _clean(records, table.conditions.get(SUBSET))
        if reference is None:
            continue
        wrong, n = _wrong(table), len(table)
        clean_wrong, clean_n = _wrong(reference), len(reference)
        low, high = newcombe_interval(wrong, n, clean_wrong, clean_n)
        rows.append(Metric("gap_err", 100.0 * (wrong / n - clean_wrong / clean_n), n + clean_n,
                           False, dict(table.conditions), 100.0 * low, 100.0 * high))
    return rows
