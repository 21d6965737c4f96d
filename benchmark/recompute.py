"""Re-reduce stored per-sample records into metrics, without any model: `rubench report
--recompute` (after a change in how a metric or its interval is computed)."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from benchmark.errors import RubenchError
from benchmark.store import Store
from benchmark.tasks import get_task


def recompute(out_dir: Path, progress: bool = True) -> tuple[int, int]:
    """Replace every current unit's metrics in `out_dir`'s store by the reduction of its
    records, then rewrite results.csv; returns (units recomputed, units without records)."""
    if not (Path(out_dir) / "results.sqlite").is_file():
        raise RubenchError(f"{out_dir}: no results.sqlite; run `rubench evaluate` first")
    store = Store(out_dir)
    try:
        keys = store.current_keys()
        done = 0
        for (_, sha256, task, config), unit, records in tqdm(
                store.records(keys), total=len(keys), desc="recompute", unit="unit",
                disable=not progress):
            metrics = get_task(unit.task_type).reduce(records, unit.params, unit.seed)
            store.replace_metrics((sha256, task, config), metrics)
            done += 1
        store.export(keys)
    finally:
        store.close()
    return done, len(keys) - done
