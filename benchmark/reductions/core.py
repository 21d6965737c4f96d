"""Metrics as registered reductions of per-sample records.

A metric function turns a unit's records into rows: `fn(records, params, seed) -> [Metric]`,
with no model, so stored records re-reduce (`rubench report --recompute`). It is registered for
one task type; a task's metrics are all the functions registered for its type, in registration
order. Metrics whose intervals share one bootstrap over images (ECE, MCE and Brier; an OOD
scorer's six detection metrics) are one function, so the shared resamples stay shared.
Torch-free: recomputing a report loads no model code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmark.records import Records
from benchmark.registry import registry
from benchmark.stats import Metric

MetricFn = Callable[[Records, dict[str, Any], int], list[Metric]]

METRICS = registry("metric")


def register_metric(task: str, name: str, description: str = "") -> Callable[[MetricFn],
                                                                             MetricFn]:
    """Register `fn` as metric function `name` of task type `task` (listed as `task/name`)."""

    def wrap(fn: MetricFn) -> MetricFn:
        return METRICS.add(f"{task}/{name}", fn, description, task=task)

    return wrap


def metric_functions(task: str) -> list[MetricFn]:
    """The metric functions registered for task type `task`, in registration order."""
    return [entry.value for entry in METRICS.entries() if entry.info.get("task") == task]


class NoMetrics(LookupError):
    """A task type with no registered metric function (its plugin is not loaded)."""


def reduce_records(task: str, records: Records, params: dict[str, Any], seed: int
                   ) -> list[Metric]:
    """Every metric row of one unit of task type `task`: each registered function's rows,
    in order. Two functions emitting the same (metric, conditions) is an error."""
    functions = metric_functions(task)
    if not functions:
        raise NoMetrics(f"no metric function is registered for task type {task!r} (a task "
                        "from a plugin needs that plugin: pass --plugin)")
    rows: list[Metric] = []
    seen: dict[tuple[str, str], str] = {}
    for fn in functions:
        for row in fn(records, params, seed):
            key = (row.metric, repr(sorted(row.conditions.items())))
            if key in seen:
                raise ValueError(f"metric {row.metric!r} under {row.conditions} is emitted by "
                                 f"both {seen[key]} and {fn.__name__} (task type {task!r})")
            seen[key] = fn.__name__
            rows.append(row)
    return rows
