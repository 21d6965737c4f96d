"""Results store: SQLite, one transaction per (checkpoint, task), keyed so re-runs resume safely.

A unit of work is keyed by (checkpoint sha256, task name, config hash). Its metric rows and its
completion mark are written in one transaction, so a run killed at any moment leaves either the
whole unit or none of it; a re-run skips completed keys. Changing the checkpoint file or any part
of the task's configuration changes the key, so stale numbers are never reused.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.derived import ATTACK_TASKS, DerivedRow, worst_case
from benchmark.errors import StoreError
from benchmark.records import Records
from benchmark.stats import Metric
from reports.files import write_atomic

LOCK_WAIT_S = 120  # how long a write waits for another run's transaction on the same store

_RESULTS_TABLE = """
CREATE TABLE IF NOT EXISTS results (
    checkpoint_sha256 TEXT NOT NULL,
    task TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    metric TEXT NOT NULL,
    conditions TEXT NOT NULL,
    value REAL,
    n INTEGER NOT NULL,
    higher_is_better INTEGER,
    ci_low REAL,
    ci_high REAL
)"""
_RESULTS_INDEX = ("CREATE INDEX IF NOT EXISTS results_key ON results "
                  "(checkpoint_sha256, task, config_hash)")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS completed (
    checkpoint_sha256 TEXT NOT NULL,
    task TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    provenance TEXT NOT NULL,
    finished_at REAL NOT NULL,
    elapsed_s REAL NOT NULL,
    PRIMARY KEY (checkpoint_sha256, task, config_hash)
);
""" + _RESULTS_TABLE + ";\n" + _RESULTS_INDEX + ";" + """
CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_sha256 TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL,
    path TEXT NOT NULL,
    meta TEXT NOT NULL,
    meta_sources TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    checkpoint_sha256 TEXT NOT NULL,
    task TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    task_type TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    identity TEXT NOT NULL,
    records BLOB NOT NULL,
    PRIMARY KEY (checkpoint_sha256, task, config_hash)
);
CREATE TABLE IF NOT EXISTS failures (
    checkpoint TEXT NOT NULL,
    path TEXT NOT NULL,
    checkpoint_sha256 TEXT,
    task TEXT,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
"""

# Leading columns of results.csv; condition columns follow `metric`, provenance comes last.
_FRONT = ["checkpoint", "task", "metric"]
_BACK = ["value", "ci_low", "ci_high", "n", "higher_is_better", "checkpoint_sha256",
         "config_hash"]


@dataclass(frozen=True)
class StoredUnit:
    """What re-reduces a unit's stored records (its task type, parameters and seed), and the
    identity of the samples they describe (a digest of the evaluated data, the task's input
    files and the seed): records pair image by image only between equal identities."""

    task_type: str
    params: dict[str, Any]
    seed: int
    identity: str = ""


class Store:
    """The results database of one output directory (`DIR/results.sqlite`)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / "results.sqlite"
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.out_dir}: cannot create the output folder: {exc}") from exc
        try:
            # another run on the same --out holds the write lock for one unit at a time: wait
            self.conn = sqlite3.connect(self.path, timeout=LOCK_WAIT_S)
            self.conn.executescript(_SCHEMA)
            self._allow_no_direction()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> StoreError:
        """A store failure as a clear error naming the file (locked, read-only, full, ...)."""
        if "locked" in str(exc):
            return StoreError(f"{self.path}: another process kept the store locked for over "
                              f"{LOCK_WAIT_S} s (a second rubench run on the same --out?); "
                              "wait for it, or use another --out")
        return StoreError(f"{self.path}: cannot write the results store: {exc}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction; SQLite failures (locked, read-only, disk full) as StoreError."""
        try:
            with self.conn:
                yield
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _allow_no_direction(self) -> None:
        """Migrate a store written before rows could have no direction (higher_is_better was
        NOT NULL): copy the results table into the current schema, keeping every row, in one
        transaction (DDL included), so an interrupted migration leaves the old store intact."""
        columns = self.conn.execute("PRAGMA table_info(results)").fetchall()
        if not any(name == "higher_is_better" and notnull for _, name, _, notnull, _, _
                   in columns):
            return
        names = ", ".join(name for _, name, *_ in columns)
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute("ALTER TABLE results RENAME TO results_old")
            self.conn.execute("DROP INDEX IF EXISTS results_key")
            self.conn.execute(_RESULTS_TABLE)
            self.conn.execute(_RESULTS_INDEX)
            self.conn.execute(f"INSERT INTO results ({names}) SELECT {names} FROM results_old")
            self.conn.execute("DROP TABLE results_old")

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    def is_done(self, sha256: str, task: str, config_hash: str) -> bool:
        """Whether this (checkpoint, task, configuration) is already stored."""
        row = self.conn.execute(
            "SELECT 1 FROM completed WHERE checkpoint_sha256=? AND task=? AND config_hash=?",
            (sha256, task, config_hash)).fetchone()
        return row is not None

    def save(self, *, checkpoint: str, sha256: str, task: str, config_hash: str,
             metrics: Iterable[Metric], provenance: dict[str, Any], elapsed_s: float,
             records: Records | None = None, unit: StoredUnit | None = None) -> None:
        """Store one finished (checkpoint, task) atomically: its metric rows, its per-sample
        `records` (with the task type, parameters and seed in `unit`, which re-reduce them)
        and its completion mark."""
        key = (sha256, task, config_hash)
        blob = records.encode() if records is not None and unit is not None else None
        with self._transaction():
            self._write_metrics(key, metrics)
            self.conn.execute("DELETE FROM samples WHERE checkpoint_sha256=? AND task=? AND "
                              "config_hash=?", key)
            if blob is not None:
                self.conn.execute("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  # in the suite's order: a reduction may depend on it (each
                                  # OOD set's bootstrap stream is its position)
                                  (*key, unit.task_type, json.dumps(unit.params),
                                   unit.seed, unit.identity, blob))
            self.conn.execute(
                "INSERT OR REPLACE INTO completed VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, checkpoint, json.dumps(provenance, sort_keys=True), time.time(),
                 elapsed_s))

    def _write_metrics(self, key: tuple[str, str, str], metrics: Iterable[Metric]) -> None:
        """Replace a unit's metric rows (inside the caller's transaction)."""
        rows = [(*key, m.metric, json.dumps(m.conditions, sort_keys=True), float(m.value),
                 int(m.n), None if m.higher_is_better is None else int(m.higher_is_better),
                 m.ci_low, m.ci_high)
                for m in metrics]
        self.conn.execute("DELETE FROM results WHERE checkpoint_sha256=? AND task=? AND "
                          "config_hash=?", key)
        self.conn.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def replace_metrics(self, key: tuple[str, str, str], metrics: Iterable[Metric]) -> None:
        """Replace the metric rows of a completed unit (sha256, task, config hash), e.g. with
        those re-reduced from its records; its records and completion mark stay."""
        with self._transaction():
            self._write_metrics(key, metrics)

    def save_checkpoint(self, *, checkpoint: str, sha256: str, path: str, meta: dict[str, Any],
                        meta_sources: dict[str, str]) -> None:
        """Remember how a checkpoint was described (architecture, normalization, sources)."""
        with self._transaction():
            self.conn.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                              (sha256, checkpoint, path, json.dumps(meta, sort_keys=True),
                               json.dumps(meta_sources, sort_keys=True)))

    def record_failure(self, *, checkpoint: str, path: str, sha256: str | None,
                       task: str | None, error: str) -> None:
        """Log a failed checkpoint or task; it stays pending, so the next run retries it."""
        with self._transaction():
            self.conn.execute("INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?)",
                              (checkpoint, path, sha256, task, error, time.time()))

    def results_frame(self, keys: Iterable[tuple[str, str, str, str]],
                      derived: Iterable[DerivedRow] = ()) -> pd.DataFrame:
        """Long-form results of the completed units among `keys` (checkpoint name, sha256, task,
        config hash), labelled with the names given there: a name changed in a sidecar (which
        does not change the unit's key) shows in the export at once. `derived` rows (computed
        from several units' records) follow each checkpoint's units, with the provenance of
        one of its units.

        Rows are sorted by checkpoint name, then in the order of `keys` (the suite's task order).

        One row per metric; condition columns (eps, severity, ...) are expanded from the stored
        JSON and provenance (seed, suite, versions, device) from the completion record. No
        timestamps, so the same run on the same machine exports identical files.
        """
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted_units "
                          "(plan_order INTEGER, checkpoint TEXT, checkpoint_sha256 TEXT, "
                          "task TEXT, config_hash TEXT)")
        with self._transaction():
            self.conn.execute("DELETE FROM wanted_units")
            self.conn.executemany("INSERT INTO wanted_units VALUES (?, ?, ?, ?, ?)",
                                  [(i, *key) for i, key in enumerate(keys)])
        frame = pd.read_sql_query(
            "SELECT w.checkpoint, c.provenance, w.plan_order, r.rowid AS row_order, r.* "
            "FROM wanted_units w "
            "JOIN completed c USING (checkpoint_sha256, task, config_hash) "
            "JOIN results r USING (checkpoint_sha256, task, config_hash)", self.conn)
        if frame.empty:
            return pd.DataFrame(columns=_FRONT + _BACK)
        frame = self._with_derived(frame, list(derived))
        conditions = pd.DataFrame([json.loads(c) for c in frame.pop("conditions")],
                                  index=frame.index)
        provenance = pd.DataFrame([json.loads(p) for p in frame.pop("provenance")],
                                  index=frame.index)
        frame["higher_is_better"] = frame["higher_is_better"].map({1: True, 0: False})
        condition_cols = sorted(conditions.columns)
        provenance_cols = sorted(set(provenance.columns) - set(frame.columns))
        frame = pd.concat([frame, conditions[condition_cols], provenance[provenance_cols]],
                          axis=1)
        frame = frame.sort_values(["checkpoint", "plan_order", "row_order"], kind="stable")
        return frame[_FRONT + condition_cols + _BACK + provenance_cols].reset_index(drop=True)

    @staticmethod
    def _with_derived(frame: pd.DataFrame, derived: list[DerivedRow]) -> pd.DataFrame:
        """`frame` (raw rows, JSON columns) with the derived rows appended in its shape."""
        provenance = dict(zip(frame["checkpoint_sha256"], frame["provenance"], strict=False))
        rows = [{"checkpoint": row.checkpoint,
                 "provenance": json.dumps({**json.loads(provenance[row.sha256]),
                                           "task_type": row.task}),
                 "plan_order": len(frame) + i, "row_order": 0,
                 "checkpoint_sha256": row.sha256, "task": row.task,
                 "config_hash": row.config_hash, "metric": row.metric.metric,
                 "conditions": json.dumps(row.metric.conditions, sort_keys=True),
                 "value": row.metric.value, "n": row.metric.n,
                 "higher_is_better": row.metric.higher_is_better,
                 "ci_low": row.metric.ci_low, "ci_high": row.metric.ci_high}
                for i, row in enumerate(derived) if row.sha256 in provenance]
        if not rows:
            return frame
        extra = pd.DataFrame(rows)
        extra["higher_is_better"] = extra["higher_is_better"].map({True: 1, False: 0})
        return pd.concat([frame, extra], ignore_index=True)

    def record_blobs(self, keys: Iterable[tuple[str, str, str, str]],
                     task_types: tuple[str, ...] | None = None
                     ) -> Iterator[tuple[tuple[str, str, str, str], StoredUnit, bytes]]:
        """The encoded per-sample records (`Records.decode` reads them) of the units among
        `keys` (checkpoint name, sha256, task, config hash) that have them (and are of one of
        `task_types`, if given), in the order of `keys`."""
        for key in keys:
            row = self.conn.execute(
                "SELECT task_type, params, seed, identity, records FROM samples WHERE "
                "checkpoint_sha256=? AND task=? AND config_hash=?", key[1:]).fetchone()
            if row is None or (task_types is not None and row[0] not in task_types):
                continue
            task_type, params, seed, identity, blob = row
            yield key, StoredUnit(task_type, json.loads(params), seed, identity), blob

    def records(self, keys: Iterable[tuple[str, str, str, str]],
                task_types: tuple[str, ...] | None = None
                ) -> Iterator[tuple[tuple[str, str, str, str], StoredUnit, Records]]:
        """`record_blobs`, decoded; a damaged blob is a StoreError naming the unit."""
        for key, unit, blob in self.record_blobs(keys, task_types):
            try:
                records = Records.decode(blob)
            except Exception as exc:  # a damaged blob: name the store and the unit
                raise StoreError(f"{self.path}: the per-sample records of {key[0]} / {key[2]} "
                                 f"are unreadable ({type(exc).__name__}: {exc}); delete the "
                                 "store or evaluate into a new --out") from exc
            yield key, unit, records

    def shown_keys(self) -> list[tuple[str, str, str, str]]:
        """The units `results.csv` shows (what `export`, `check` and `report --recompute` act
        on), in its order; without a results.csv, every checkpoint's latest units."""
        path = self.out_dir / "results.csv"
        if not path.is_file():
            return self.current_keys()
        try:
            shown = pd.read_csv(path, usecols=["checkpoint", "checkpoint_sha256", "task",
                                               "config_hash"], dtype=str)
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise StoreError(f"{path}: unreadable results ({exc}); `rubench evaluate` "
                             "rewrites it") from exc
        completed = set(self.conn.execute(
            "SELECT checkpoint_sha256, task, config_hash FROM completed").fetchall())
        order = ["checkpoint", "checkpoint_sha256", "task", "config_hash"]
        keys = shown[order].drop_duplicates().itertuples(index=False, name=None)
        return [key for key in keys if tuple(key[1:]) in completed]  # derived rows are not units

    def current_keys(self, run_keys: list[tuple[str, str, str, str]] | None = None
                     ) -> list[tuple[str, str, str, str]]:
        """The run's units, then what the store holds that the run did not cover: for every
        (checkpoint, task) pair outside the run, its latest unit, of the checkpoint's current
        file (the run's, else the latest stored). So an earlier run's checkpoints and tasks
        stay in results.csv, while results of an older file or an older configuration of a
        task the run evaluated never appear beside current ones. Without `run_keys`: every
        checkpoint's latest unit of each task."""
        run_keys = run_keys or []
        name_of = {sha: name for name, sha, _, _ in run_keys}
        covered = {(name, task) for name, _, task, _ in run_keys}
        stored = self.conn.execute("SELECT checkpoint, checkpoint_sha256, task, config_hash "
                                   "FROM completed ORDER BY finished_at").fetchall()
        current_sha = {name: sha for name, sha, _, _ in run_keys}
        latest_sha: dict[str, str] = {}
        for name, sha, _, _ in stored:
            latest_sha[name_of.get(sha, name)] = sha
        extra: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        for name, sha, task, config in stored:
            name = name_of.get(sha, name)
            if (name, task) not in covered and sha == current_sha.get(name, latest_sha[name]):
                extra[name, task] = (name, sha, task, config)  # the latest wins
        return [*run_keys, *(extra[key] for key in sorted(extra))]

    def metric_frames(self, keys: list[tuple[str, str, str, str]]
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(results, artifacts) of the units among `keys`: their metric rows with the rows
        derived from their records (`benchmark.derived`); rows that describe a distribution
        bin by bin (a `bin` condition, no direction: OOD score histograms, reliability bins)
        are artifacts, which figures read and the metrics never hold. Condition columns empty
        in a frame are left out of it."""
        frame = self.results_frame(keys, worst_case(self.records(keys, ATTACK_TASKS)))
        binned = frame["bin"].notna() & frame["higher_is_better"].isna() if "bin" in frame \
            else pd.Series(False, index=frame.index)
        columns = list(frame.columns)
        conditions = columns[columns.index("metric") + 1:columns.index("value")]
        return tuple(part.drop(columns=[c for c in conditions if part[c].isna().all()])
                     for part in (frame[~binned], frame[binned]))

    def export(self, keys: Iterable[tuple[str, str, str, str]], everything: bool = True
               ) -> Path:
        """Write `results.csv` and `artifacts.csv` (`metric_frames`) atomically; return the
        first's path: the run's `keys` and, with `everything`, the store's other current units
        (`current_keys`)."""
        keys = list(keys)
        keys = self.current_keys(keys) if everything else keys
        results, artifacts = self.metric_frames(keys)
        for name, part in (("artifacts.csv", artifacts), ("results.csv", results)):
            try:
                write_atomic(self.out_dir / name,
                             lambda path, part=part: part.to_csv(path, index=False))
            except OSError as exc:
                raise StoreError(f"{self.out_dir / name}: cannot write: {exc}; the results "
                                 f"stay in {self.path}") from exc
        return self.out_dir / "results.csv"
