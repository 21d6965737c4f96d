"""The results store's migration of stores written before rows could have no direction."""

import sqlite3

import pytest

from benchmark.errors import StoreError
from benchmark.stats import Metric
from benchmark.store import Store

OLD_RESULTS = """CREATE TABLE results (
    checkpoint_sha256 TEXT NOT NULL, task TEXT NOT NULL, config_hash TEXT NOT NULL,
    metric TEXT NOT NULL, conditions TEXT NOT NULL, value REAL, n INTEGER NOT NULL,
    higher_is_better INTEGER NOT NULL, ci_low REAL, ci_high REAL{extra})"""
ROW = ("sha", "clean", "h1", "top1_err", "{}", 2.5, 600, 0, 1.5, 4.0)


def old_store(folder, extra=""):
    folder.mkdir()
    with sqlite3.connect(folder / "results.sqlite") as conn:
        conn.execute(OLD_RESULTS.format(extra=extra))
        values = ROW + ((None,) if extra else ())
        conn.execute(f"INSERT INTO results VALUES ({', '.join('?' * len(values))})", values)


def test_old_store_is_migrated_keeping_its_rows_and_accepts_rows_without_direction(tmp_path):
    old_store(tmp_path / "out")
    store = Store(tmp_path / "out")
    assert store.conn.execute("SELECT * FROM results").fetchall() == [ROW]
    store.save(checkpoint="m", sha256="sha", task="calibration", config_hash="h2",
               metrics=[Metric("temperature", 1.7, 100, None)], provenance={}, elapsed_s=0.1)
    assert store.conn.execute("SELECT higher_is_better FROM results WHERE task='calibration'"
                              ).fetchone() == (None,)
    store.close()
    Store(tmp_path / "out").close()  # a second open finds nothing to migrate


def test_a_failed_migration_leaves_the_old_store_as_it_was(tmp_path):
    old_store(tmp_path / "out", extra=", surprise TEXT")  # a column the new table lacks
    with pytest.raises(StoreError, match=r"results\.sqlite: cannot write the results store.*"
                                         "surprise"):
        Store(tmp_path / "out")
    with sqlite3.connect(tmp_path / "out" / "results.sqlite") as conn:
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        assert "results_old" not in tables
        assert conn.execute("SELECT * FROM results").fetchall() == [(*ROW, None)]
