"""`rubench baseline` / `rubench check`: verdicts on crafted results, exit codes, diff table."""

import json

import pandas as pd

from benchmark.cli import main
from benchmark.tasks import Metric

COLUMNS = ["checkpoint", "task", "metric", "eps", "value", "ci_low", "ci_high", "n",
           "higher_is_better"]


def rate_row(checkpoint, metric, errors, n, eps=float("nan")):
    m = Metric.rate(metric, errors, n)
    return [checkpoint, "clean", metric, eps, m.value, m.ci_low, m.ci_high, n, False]


def write(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "results.csv", index=False)


def gate(tmp_path, base_rows, now_rows, *flags):
    write(tmp_path / "base", base_rows)
    write(tmp_path / "now", now_rows)
    assert main(["baseline", str(tmp_path / "base"), "-o", str(tmp_path / "b.json")]) == 0
    return main(["check", str(tmp_path / "now"), "--baseline", str(tmp_path / "b.json"), *flags])


def test_identical_results_pass(tmp_path, capsys):
    rows = [rate_row("erm", "top1_err", 30, 600), rate_row("erm", "top1_err", 90, 600, eps=0.1)]
    assert gate(tmp_path, rows, rows) == 0
    assert "2 metrics: 2 ok" in capsys.readouterr().out


def test_large_regression_fails_and_is_listed(tmp_path, capsys):
    code = gate(tmp_path, [rate_row("erm", "top1_err", 30, 10000)],
                [rate_row("erm", "top1_err", 300, 10000)])
    out = capsys.readouterr().out
    assert code == 1
    line = next(line for line in out.splitlines() if "erm clean/top1_err" in line)
    assert "0.300" in line and "3.000" in line and "2.700" in line and "REGRESSED" in line


def test_small_sample_change_within_noise_passes(tmp_path, capsys):
    """10 images: 1 -> 3 errors is +20 points, far beyond the tolerance but within the noise."""
    code = gate(tmp_path, [rate_row("erm", "top1_err", 1, 10)],
                [rate_row("erm", "top1_err", 3, 10)])
    assert code == 0
    assert "within-noise" in capsys.readouterr().out


def test_improvement_passes_and_direction_respects_higher_is_better(tmp_path, capsys):
    base = [rate_row("erm", "top1_err", 300, 10000),
            ["erm", "ood", "auroc", float("nan"), 90.0, None, None, 500, True]]
    now = [rate_row("erm", "top1_err", 30, 10000),
           ["erm", "ood", "auroc", float("nan"), 80.0, None, None, 500, True]]
    assert gate(tmp_path, base, now) == 1  # AUROC fell by 10 points with no interval
    out = capsys.readouterr().out
    assert "improved" in out
    assert next(line for line in out.splitlines() if "auroc" in line).endswith("REGRESSED")


def test_tolerance_global_and_per_metric(tmp_path):
    base = [["erm", "calibration", "ece", float("nan"), 2.0, None, None, 600, False]]
    now = [["erm", "calibration", "ece", float("nan"), 2.8, None, None, 600, False]]
    assert gate(tmp_path, base, now) == 1  # +0.8 > default 0.5
    assert gate(tmp_path, base, now, "--tolerance", "1") == 0
    assert gate(tmp_path, base, now, "--tolerance-for", "ece=1.0") == 0


def test_missing_metric_fails_unless_allowed_and_new_metric_is_reported(tmp_path, capsys):
    base = [rate_row("erm", "top1_err", 30, 600), rate_row("erm", "top5_err", 3, 600)]
    now = [rate_row("erm", "top1_err", 30, 600), rate_row("mixup", "top1_err", 33, 600)]
    assert gate(tmp_path, base, now) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "new" in out
    assert gate(tmp_path, base, now, "--allow-missing") == 0


def test_unusable_input_exits_2(tmp_path, capsys):
    write(tmp_path / "now", [rate_row("erm", "top1_err", 30, 600)])
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["check", str(tmp_path / "now"), "--baseline", str(tmp_path / "bad.json")]) == 2
    (tmp_path / "other.json").write_text(json.dumps({"format": 99}))
    assert main(["check", str(tmp_path / "now"), "--baseline", str(tmp_path / "other.json")]) == 2
    assert main(["check", str(tmp_path / "nowhere"), "--baseline", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "bad.json: not JSON" in err and "not a rubench baseline" in err
    assert "nowhere/results.csv: no results.csv" in err


def test_rows_without_direction_are_reported_but_never_fail(tmp_path, capsys):
    """A fitted temperature moving by 2 is news, not a regression, whichever way it moves."""
    base = [["erm", "calibration", "temperature", float("nan"), 1.5, None, None, 100, None]]
    up = [["erm", "calibration", "temperature", float("nan"), 3.5, None, None, 100, None]]
    assert gate(tmp_path, base, up) == 0
    assert next(line for line in capsys.readouterr().out.splitlines()
                if "temperature" in line).endswith("changed")
    assert gate(tmp_path, up, base) == 0


def test_vanished_rows_without_direction_are_listed_but_do_not_fail(tmp_path, capsys):
    """Histogram bins are keyed by their centre, which moves with the score range."""
    kept = rate_row("erm", "top1_err", 30, 600)
    base = [kept, ["erm", "ood", "score_hist", 0.25, 40.0, None, None, 600, None]]
    assert gate(tmp_path, base, [kept]) == 0
    assert "missing (allowed)" in capsys.readouterr().out
