"""`rubench export`: per-sample records as CSV / Parquet, agreeing with the stored metrics; a
baseline keeps its records so `rubench check` can pair its tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_runner import make_zoo

from benchmark.cli import main
from benchmark.paired import samples_path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    make_zoo(root / "zoo", seeds=(0, 1))
    assert main(["evaluate", str(root / "zoo"), "--suite", "digits", "--tasks", "clean",
                 "--data-root", str(root / "data"), "--limit", "120", "--out",
                 str(root / "out"), "--no-progress"]) == 0
    return root / "out"


def test_samples_reduce_to_the_stored_error_rates(evaluated: Path, tmp_path: Path):
    assert main(["export", str(evaluated), "--samples", "-o", str(tmp_path / "s.csv")]) == 0
    samples = pd.read_csv(tmp_path / "s.csv")
    assert list(samples.columns[:4]) == ["checkpoint", "task", "index", "correct"]
    assert len(samples) == 2 * 120
    assert sorted(samples["index"].unique()) == list(range(120))
    results = pd.read_csv(evaluated / "results.csv")
    for checkpoint, rows in samples.groupby("checkpoint"):
        stored = results[(results.checkpoint == checkpoint) & (results.metric == "top1_err")]
        assert 100 * (1 - rows["correct"].mean()) == pytest.approx(stored["value"].item())
        top5 = results[(results.checkpoint == checkpoint) & (results.metric == "top5_err")]
        assert 100 * (1 - rows["correct_top5"].mean()) == pytest.approx(top5["value"].item())


def test_parquet_holds_what_csv_holds(evaluated: Path, tmp_path: Path):
    pytest.importorskip("pyarrow")
    for name in ("s.csv", "s.parquet"):
        assert main(["export", str(evaluated), "--samples", "-o", str(tmp_path / name)]) == 0
    csv, parquet = pd.read_csv(tmp_path / "s.csv"), pd.read_parquet(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(csv, parquet, check_dtype=False, check_exact=False)


def test_export_refuses_what_it_cannot_write(evaluated: Path, tmp_path: Path, capsys):
    assert main(["export", str(evaluated), "--samples", "-o", str(tmp_path / "s.xlsx")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "-o", str(tmp_path / "m.csv")]) == 2
    assert "no results.sqlite" in capsys.readouterr().err


def test_baseline_keeps_records_and_check_pairs(evaluated: Path, tmp_path: Path, capsys):
    baseline = tmp_path / "base.json"
    assert main(["baseline", str(evaluated), "-o", str(baseline)]) == 0
    assert samples_path(baseline).is_file()
    assert main(["check", str(evaluated), "--baseline", str(baseline)]) == 0
    assert "rule: paired tests on the same images" in capsys.readouterr().out
    archive = samples_path(baseline)
    archive.write_bytes(archive.read_bytes() + b"x")  # not the archive this baseline names
    assert main(["check", str(evaluated), "--baseline", str(baseline)]) == 0
    assert "is not the archive written with this baseline" in capsys.readouterr().out
    assert main(["baseline", str(evaluated), "-o", str(baseline), "--no-samples"]) == 0
    assert not archive.exists()  # an older archive never outlives its baseline
    assert main(["check", str(evaluated), "--baseline", str(baseline)]) == 0
    assert "rule: unpaired rule" in capsys.readouterr().out


def test_report_recompute_restores_metrics_from_records(evaluated: Path, tmp_path: Path):
    import shutil
    import sqlite3

    out = tmp_path / "out"
    shutil.copytree(evaluated, out)
    before = pd.read_csv(out / "results.csv")
    with sqlite3.connect(out / "results.sqlite") as conn:  # a stale stored number
        conn.execute("UPDATE results SET value = 99.0 WHERE metric = 'top1_err'")
    assert main(["report", str(out), "--recompute", "--no-progress"]) == 0
    after = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(before.drop(columns="git_hash"),
                                  after.drop(columns="git_hash"))


def test_report_baseline_runs_paired_tests_between_checkpoints(evaluated: Path, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(evaluated, out)
    assert main(["report", str(out), "--baseline", "m0"]) == 0
    text = (out / "leaderboard.md").read_text()
    assert "beyond noise under a paired test on the same images" in text
    # the clean-error cell of m1 is marked exactly when scipy's exact test says so
    from scipy.stats import binomtest

    assert main(["export", str(out), "--samples", "-o", str(tmp_path / "s.csv")]) == 0
    samples = pd.read_csv(tmp_path / "s.csv").pivot(index="index", columns="checkpoint",
                                                    values="correct")
    worse = int(((samples.m0 == 1) & (samples.m1 == 0)).sum())
    better = int(((samples.m0 == 0) & (samples.m1 == 1)).sum())
    significant = worse + better > 0 and binomtest(worse, worse + better, 0.5).pvalue < 0.05
    row = next(line for line in text.splitlines() if line.startswith("| m1 |"))
    clean_cell = row.split(" | ")[1]
    assert clean_cell.endswith("*)") == significant, (clean_cell, worse, better)


def test_metric_export_is_results_csv(evaluated: Path, tmp_path: Path):
    assert main(["export", str(evaluated), "-o", str(tmp_path / "m.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "m.csv"),
                                  pd.read_csv(evaluated / "results.csv"))


METRIC_PLUGIN = '''
import numpy as np

from benchmark.reductions import register_metric
from benchmark.stats import Metric


@register_metric("clean", "mean_confidence")
def mean_confidence(records, params, seed):
    """Mean top-1 softmax probability (percent), no interval."""
    table = records.one()
    return [Metric("mean_confidence", 100.0 * float(np.mean(table["confidence"])), len(table),
                   None)]
'''


def test_a_metric_plugin_reaches_stored_units_by_recompute(evaluated: Path, tmp_path: Path):
    """One file and its registration: `report --recompute --plugin` adds the metric to every
    stored unit of its task type, computed from the records (checked against the export)."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(evaluated, out)
    plugin = tmp_path / "mean_confidence.py"
    plugin.write_text(METRIC_PLUGIN)
    done = subprocess.run([sys.executable, "-m", "benchmark.cli", "report", str(out),
                           "--recompute", "--no-progress", "--plugin", str(plugin)],
                          capture_output=True, text=True)  # its own process: the registry
    assert done.returncode == 0, done.stderr  # of this one stays as it was
    results = pd.read_csv(out / "results.csv")
    added = results[results.metric == "mean_confidence"].set_index("checkpoint")["value"]
    assert main(["export", str(out), "--samples", "-o", str(tmp_path / "s.csv")]) == 0
    samples = pd.read_csv(tmp_path / "s.csv")
    expected = 100 * samples.groupby("checkpoint")["confidence"].mean()
    assert sorted(added.index) == sorted(expected.index) and len(added) == 2
    for name, value in expected.items():
        assert added[name] == pytest.approx(value, rel=1e-6)
    before = pd.read_csv(evaluated / "results.csv")  # the built-in rows are untouched
    kept = results[results.metric != "mean_confidence"]
    pd.testing.assert_frame_equal(before.drop(columns="git_hash").reset_index(drop=True),
                                  kept.drop(columns="git_hash").reset_index(drop=True),
                                  check_dtype=False)


def test_recompute_refuses_units_no_metric_function_reduces(evaluated: Path, tmp_path: Path,
                                                             capsys):
    import shutil
    import sqlite3

    out = tmp_path / "out"
    shutil.copytree(evaluated, out)
    with sqlite3.connect(out / "results.sqlite") as conn:  # a task from a plugin not loaded
        conn.execute("UPDATE samples SET task_type = 'from_a_plugin'")
    before = (out / "results.csv").read_bytes()
    assert main(["report", str(out), "--recompute", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no metric function is registered for task type 'from_a_plugin'" in err
    assert "--plugin" in err and "nothing was changed" in err
    assert (out / "results.csv").read_bytes() == before


def test_two_metric_functions_may_not_emit_the_same_row():
    from benchmark.records import Records
    from benchmark.reductions import reduce_records, register_metric
    from benchmark.stats import Metric

    def one(records, params, seed):
        return [Metric("twice", 1.0, 1, None)]

    register_metric("test_twice", "first")(one)
    register_metric("test_twice", "second")(one)
    with pytest.raises(ValueError, match=r"'twice' under \{\} is emitted by both"):
        reduce_records("test_twice", Records(), {}, 0)
