"""`rubench export`: the store's current per-sample records or metrics as one CSV or Parquet file,
or (`--robustbench`) RobustBench model cards of the AutoAttack results.

Samples come one row per sample and condition: `checkpoint`, `task`, the condition columns
(sorted), `index` (the sample's position in the set it comes from), `correct` (0/1 top-1 hit,
empty where the row has no label, e.g. an OOD image) and the task's other columns. 0/1 columns
are written as integers, missing values as empty cells (CSV) or nulls (Parquet).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import RubenchError
from benchmark.store import Store
from reports.files import write_atomic, write_text_atomic

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


# RobustBench's threat-model folders and its ModelInfo fields, in its order (robustbench 1.1.1).
ROBUSTBENCH_THREATS = {"linf": "Linf", "l2": "L2"}
MODEL_INFO = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset",
              "venue", "architecture", "eps", "clean_acc", "reported", "corruptions_acc",
              "corruptions_acc_3d", "corruptions_mce", "corruptions_mce_3d", "autoattack_acc",
              "footnote")


def _percent(value: float) -> str:
    """An accuracy as RobustBench writes it: percent rounded to 2 decimals, as a string."""
    return str(round(float(value), 2))


def robustbench_cards(out_dir: Path, folder: Path) -> list[Path]:
    """Write one RobustBench model card per checkpoint and threat model evaluated by the
    `autoattack` task's standard version, as `folder/<dataset>/<Linf|L2>/<checkpoint>.json`
    (RobustBench's `model_info` layout and ModelInfo fields; `clean_acc` is on the attacked
    images). What rubench cannot know (additional data, link, venue, ...) is null."""
    if not (Path(out_dir) / "results.sqlite").is_file():
        raise RubenchError(f"{out_dir}: no results.sqlite; run `rubench evaluate` first")
    store = Store(out_dir)
    try:
        results = store.metric_frames(store.shown_keys())[0]
    finally:
        store.close()
    rows = results[results["task_type"] == "autoattack"] if "task_type" in results else results[:0]
    if rows.empty:
        raise RubenchError(f"{out_dir}: no autoattack results; evaluate a suite with an "
                           "`autoattack` task first (e.g. --suite robustbench-cifar10-linf)")
    standard = rows[rows["ensemble"] == "standard"]
    if standard.empty:
        found = ", ".join(sorted(set(rows["ensemble"])))
        raise RubenchError(f"{out_dir}: the autoattack results are of ensemble(s) {found}; "
                           "RobustBench's numbers are AutoAttack's version = 'standard'")
    written = []
    for (checkpoint, dataset, norm), group in standard.groupby(["checkpoint", "dataset", "norm"],
                                                               sort=True):
        if norm not in ROBUSTBENCH_THREATS:
            raise RubenchError(f"{checkpoint}: RobustBench has no {norm} threat model "
                               f"(it has {', '.join(ROBUSTBENCH_THREATS)})")
        robust = group[group["metric"] == "top1_err"]
        if len(robust) != 1:
            found = ", ".join(f"{task} at eps {eps:g}" for task, eps
                              in zip(robust["task"], robust["eps"], strict=True))
            raise RubenchError(f"{checkpoint}: {len(robust)} standard AutoAttack results on "
                               f"{dataset} {norm} ({found}); a RobustBench card holds one "
                               "(evaluate one eps in one task)")
        (clean,) = group.loc[group["metric"] == "clean_err", "value"]
        row = robust.iloc[0]
        card = dict.fromkeys(MODEL_INFO)
        card.update(name=checkpoint, dataset=row["dataset"], architecture=row["arch"],
                    eps=float(row["eps"]), clean_acc=_percent(100 - clean),
                    autoattack_acc=_percent(100 - row["value"]),
                    footnote=f"rubench {row['rubench_version']}: AutoAttack standard "
                             f"(pyautoattack), {int(row['n'])} images, seed {int(row['seed'])}")
        path = Path(folder) / str(row["dataset"]) / ROBUSTBENCH_THREATS[norm] / f"{checkpoint}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(card, indent=2) + "\n")
        written.append(path)
    return written
