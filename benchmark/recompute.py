"""Re-reduce stored per-sample records into metrics, without any model: `rubench report
--recompute` (after a change in how a metric or its interval is computed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmark.errors import RubenchError
from benchmark.records import Records
from benchmark.reductions import reduce_records
from benchmark.stats import Metric
from benchmark.store import Store
from reports.pool import run_jobs


def _reduce(task_type: str, blob: bytes, params: dict[str, Any], seed: int
            ) -> list[Metric] | str:
    """One unit's metric rows from its encoded records, or what went wrong (reported with the
    unit's name)."""
    try:
        return reduce_records(task_type, Records.decode(blob), params, seed)
    except Exception as exc:  # a unit that does not reduce is reported, nothing replaced
        return f"{type(exc).__name__}: {exc}"


def recompute(out_dir: Path, progress: bool = True) -> tuple[int, int]:
    """Replace the metrics of every unit results.csv shows by the reduction of its records
    (units spread over the cores), then rewrite results.csv; returns (units recomputed,
    units without records)."""
    if not (Path(out_dir) / "results.sqlite").is_file():
        raise RubenchError(f"{out_dir}: no results.sqlite; run `rubench evaluate` first")
    store = Store(out_dir)
    try:
        keys = store.shown_keys()
        units = list(store.record_blobs(keys))
        with tqdm(total=len(units), desc="recompute", unit="unit",
                  disable=not progress) as bar:
            reduced = run_jobs([(_reduce, (unit.task_type, blob, unit.params, unit.seed))
                                for _, unit, blob in units], done=bar.update)
        for ((name, _, task, _), _, _), metrics in zip(units, reduced, strict=True):
            if isinstance(metrics, str):  # nothing is replaced unless every unit reduces
                raise RubenchError(f"{store.path}: {name} / {task}: its records do not reduce "
                                   f"({metrics}); nothing was changed")
        for ((_, sha256, task, config), _, _), metrics in zip(units, reduced, strict=True):
            store.replace_metrics((sha256, task, config), metrics)
        store.export(keys, everything=False)
    finally:
        store.close()
    return len(reduced), len(keys) - len(reduced)
