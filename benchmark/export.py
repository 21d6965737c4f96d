"""`rubench export`: the store's current per-sample records or metrics as one CSV or Parquet file.

Samples come one row per sample and condition: `checkpoint`, `task`, the condition columns
(sorted), `index` (the sample's position in the set it comes from), `correct` (0/1 top-1 hit,
empty where the row has no label, e.g. an OOD image) and the task's other columns. 0/1 columns
are written as integers, missing values as empty cells (CSV) or nulls (Parquet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import RubenchError
from benchmark.store import Store
from reports.files import write_atomic

FORMATS = (".csv", ".parquet")


def samples_frame(store: Store, keys: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """Long-form per-sample records of the units among `keys` that hold records."""
    frames, conditions = [], set()
    for (name, _, task, _), _, records in store.records(keys):
        for table in records:
            frame = pd.DataFrame({k: (v.astype(np.int8) if v.dtype == np.bool_ else v)
                                  for k, v in table.columns.items()})
            for key, value in table.conditions.items():
                frame[key] = value
            conditions.update(table.conditions)
            frame["checkpoint"], frame["task"] = name, task
            frames.append(frame)
    front = ["checkpoint", "task", *sorted(conditions), "index", "correct"]
    if not frames:
        return pd.DataFrame(columns=front)
    frame = pd.concat(frames, ignore_index=True)
    if "correct" not in frame:
        frame["correct"] = pd.NA
    frame["correct"] = frame["correct"].astype("Int8")
    return frame[[*front, *(c for c in frame.columns if c not in front)]]


def export(out_dir: Path, target: Path, samples: bool) -> int:
    """Write the current units of `out_dir`'s store (per-sample records with `samples`, else
    the metric rows) to `target` (.csv or .parquet); returns the number of rows."""
    suffix = Path(target).suffix.lower()
    if suffix not in FORMATS:
        raise RubenchError(f"{target}: the file name must end in .csv or .parquet")
    if not (Path(out_dir) / "results.sqlite").is_file():
        raise RubenchError(f"{out_dir}: no results.sqlite; run `rubench evaluate` first")
    store = Store(out_dir)
    try:
        keys = store.shown_keys()
        frame = samples_frame(store, keys) if samples else store.metric_frames(keys)[0]
    finally:
        store.close()
    if samples and frame.empty and keys:
        raise RubenchError(f"{out_dir}: the stored results hold no per-sample records "
                           "(computed before rubench 0.2 kept them); evaluate again into a new "
                           "--out to record them")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401  (pandas writes Parquet through it)
        except ImportError:
            raise RubenchError(f"{target}: writing Parquet needs pyarrow "
                               "(pip install 'rubench[parquet]'), or export to .csv") from None
        write_atomic(Path(target), lambda path: frame.to_parquet(path, index=False))
    else:
        write_atomic(Path(target), lambda path: frame.to_csv(path, index=False))
    return len(frame)
