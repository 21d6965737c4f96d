"""Re-reduce stored per-sample records into metrics, without any model: `rubench report
--recompute` (after a change in how a metric or its interval is computed)."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from benchmark.errors import RubenchError
from benchmark.store import Store
from benchmark.tasks import get_task


def recompute(out_dir: Path, progress: bool = True) -> tuple[int, int]:
    """Replace the metrics of every unit results.csv shows by the reduction of its records,
    then rewrite results.csv; returns (units recomputed, units without records)."""
    if not (Path(out_dir) / "results.sqlite").is_file():
        raise RubenchError(f"{out_dir}: no results.sqlite; run `rubench evaluate` first")
    store = Store(out_dir)
    try:
        keys = store.shown_keys()
        reduced = []
        for (name, sha256, task, config), unit, records in tqdm(
                store.records(keys), total=len(keys), desc="recompute", unit="unit",
                disable=not progress):
            try:
                metrics = get_task(unit.task_type).reduce(records, unit.params, unit.seed)
            except Exception as exc:  # nothing is replaced unless every unit reduces
                raise RubenchError(f"{store.path}: {name} / {task}: its records do not reduce "
                                   f"({type(exc).__name__}: {exc}); nothing was changed") from exc
            reduced.append(((sha256, task, config), metrics))
        for key, metrics in reduced:
            store.replace_metrics(key, metrics)
        store.export(keys, everything=False)
    finally:
        store.close()
    return len(reduced), len(keys) - len(reduced)
