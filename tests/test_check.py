"""`rubench baseline` / `rubench check`: verdicts on crafted results, exit codes, diff table."""

import contextlib
import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.stats import Metric
from reports.check import Tolerances, compare, read_baseline, read_results

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
    with contextlib.redirect_stdout(io.StringIO()):  # the tests read check's output only
        assert main(["baseline", str(tmp_path / "base"), "-o", str(tmp_path / "b.json")]) == 0
    return main(["check", str(tmp_path / "now"), "--baseline", str(tmp_path / "b.json"), *flags])


def test_identical_results_pass(tmp_path, capsys):
    rows = [rate_row("erm", "top1_err", 30, 600), rate_row("erm", "top1_err", 90, 600, eps=0.1)]
    assert gate(tmp_path, rows, rows) == 0
    first, rule = capsys.readouterr().out.splitlines()
    assert first == "rubench check passed: 2 metrics (2 ok)"
    assert rule.startswith("rule: unpaired rule: ") and "keeps no per-sample records" in rule


def test_large_regression_fails_and_is_listed(tmp_path, capsys):
    code = gate(tmp_path, [rate_row("erm", "top1_err", 30, 10000)],
                [rate_row("erm", "top1_err", 300, 10000)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[0] == "rubench check FAILED: 1 of 1 metrics (1 REGRESSED)"
    line = next(line for line in out.splitlines() if "erm clean/top1_err" in line)
    assert "0.300" in line and "3.000" in line and "2.700" in line and "REGRESSED" in line


def test_terminal_shows_only_failures_and_the_file_gets_everything(tmp_path, capsys):
    """The summary line leads, then the failing metrics only; --output holds every verdict."""
    base = [*(rate_row(f"m{i}", "top1_err", 30, 10000) for i in range(49)),
            rate_row("m49", "top1_err", 100, 10000)]
    now = [*base[:48], rate_row("m48", "top1_err", 300, 10000),
           rate_row("m49", "top1_err", 10, 10000)]
    out_csv = tmp_path / "verdicts.csv"
    assert gate(tmp_path, base, now, "--output", str(out_csv)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "rubench check FAILED: 1 of 50 metrics (1 REGRESSED, 1 improved, 48 ok)"
    assert [line for line in lines if "clean/top1_err" in line] == \
        [next(line for line in lines if line.startswith("m48 "))]
    assert lines[-2] == f"full table (50 metrics): {out_csv}"
    table = pd.read_csv(out_csv)
    assert len(table) == 50 and set(table.verdict) == {"ok", "REGRESSED", "improved"}
    row = table[table.checkpoint == "m48"].iloc[0]
    assert row.baseline == 0.3 and row.now == 3.0 and row.tolerance == 0.5
    assert row.noise > 0 and row.delta == pytest.approx(2.7)
    text = tmp_path / "verdicts.txt"
    assert gate(tmp_path, base, now, "--output", str(text)) == 1
    body = text.read_text()
    assert body.count("clean/top1_err") == 50 and "REGRESSED" in body


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
    assert gate(tmp_path, base, now, "--tolerance-for", "calibration/ece=1.0") == 0
    assert gate(tmp_path, base, now, "--tolerance-for", "clean/ece=1.0") == 1  # other task
    # task/metric beats metric, whichever order they come in
    assert gate(tmp_path, base, now, "--tolerance-for", "calibration/ece=0.1",
                "--tolerance-for", "ece=1.0") == 1


TOLERANCES = """
[default]
tolerance = 0.5
reason = "points"

[metrics.nll]
tolerance = 0.01
reason = "nats"

[metrics."calibration/ece"]
tolerance = 1.0
reason = "ECE moves a lot on 600 images"
"""


def test_patterns_and_sampling_noise_off(tmp_path):
    """`flag_*` matches every flag; with sampling_noise = false the interval widths no longer
    excuse a regression (same weights, same images: the noise cannot differ between runs)."""
    path = tmp_path / "gate.toml"
    path.write_text('[default]\nsampling_noise = false\ntolerance = 0.5\nreason = "x"\n'
                    '[metrics."flag_*"]\ntolerance = 0\nreason = "decisions"\n')
    base = [rate_row("erm", "top1_err", 10, 100),
            ["erm", "fgsm", "flag_zero_grad", float("nan"), 0.0, None, None, 100, False]]
    now = [rate_row("erm", "top1_err", 13, 100), base[1]]
    assert gate(tmp_path, base, now) == 0  # +3 points, within the Wilson noise
    assert gate(tmp_path, base, now, "--tolerances", str(path)) == 1
    flag = [base[0], [*base[1][:4], 1.0, *base[1][5:]]]
    assert gate(tmp_path, base, flag, "--tolerance", "5") == 0  # +1 < 5 without the pattern
    assert gate(tmp_path, base, flag, "--tolerances", str(path), "--tolerance", "5") == 1
    path.write_text('[default]\nsampling_noise = "no"\ntolerance = 0.5\nreason = "x"\n')
    assert gate(tmp_path, base, now, "--tolerances", str(path)) == 2


def test_tolerance_file_per_metric_with_reasons(tmp_path):
    base = [["erm", "calibration", "ece", float("nan"), 2.0, None, None, 600, False],
            ["erm", "clean", "nll", float("nan"), 0.100, None, None, 600, False]]
    ece_up = [[*base[0][:4], 2.8, *base[0][5:]], base[1]]
    nll_up = [base[0], [*base[1][:4], 0.12, *base[1][5:]]]
    path = tmp_path / "gate.toml"
    path.write_text(TOLERANCES)
    assert gate(tmp_path, base, ece_up, "--tolerances", str(path)) == 0
    assert gate(tmp_path, base, nll_up) == 0  # +0.02 nats is nothing at the default 0.5
    assert gate(tmp_path, base, nll_up, "--tolerances", str(path)) == 1
    # flags beat the file
    assert gate(tmp_path, base, nll_up, "--tolerances", str(path),
                "--tolerance-for", "nll=0.05") == 0
    assert gate(tmp_path, base, ece_up, "--tolerances", str(path), "--tolerance", "0.1") == 0


@pytest.mark.parametrize("body, message", [
    ("[metrics.nll]\ntolerance = 0.01\n", "needs exactly `tolerance`"),
    ("[metrics.nll]\ntolerance = 0.01\nreason = \"  \"\n", "needs exactly `tolerance`"),
    ("[metrics.nll]\ntolerance = nan\nreason = \"x\"\n", "finite number >= 0"),
    ("[metrics.nll]\ntolerance = inf\nreason = \"x\"\n", "finite number >= 0"),
    ("[default]\ntolerance = -1\nreason = \"x\"\n", "finite number >= 0"),
    ("[default]\ntolerance = \"big\"\nreason = \"x\"\n", "finite number >= 0"),
    ("[defaults]\ntolerance = 1\nreason = \"x\"\n", "unknown table"),
    ("[metrics]\nnll = 3\n", "needs exactly `tolerance`"),
    ("tolerance = [", "not TOML"),
])
def test_bad_tolerance_file_exits_2_naming_the_file(tmp_path, capsys, body, message):
    rows = [rate_row("erm", "top1_err", 30, 600)]
    path = tmp_path / "gate.toml"
    path.write_text(body)
    assert gate(tmp_path, rows, rows, "--tolerances", str(path)) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


@pytest.mark.parametrize("flags", [("--tolerance", "nan"), ("--tolerance", "inf"),
                                   ("--tolerance", "-0.5"), ("--tolerance-for", "ece=nan"),
                                   ("--tolerance-for", "ece=-inf"), ("--tolerance-for", "ece")])
def test_tolerance_flags_must_be_finite_and_non_negative(tmp_path, capsys, flags):
    """A NaN tolerance would compare False with everything and let any regression through."""
    base = [rate_row("erm", "top1_err", 30, 10000)]
    now = [rate_row("erm", "top1_err", 3000, 10000)]
    assert gate(tmp_path, base, now, *flags) == 2
    assert "tolerance" in capsys.readouterr().err


def test_nan_now_always_fails(tmp_path, capsys):
    """NaN compares False with every threshold: the gate must not read that as 'ok'."""
    base = [rate_row("erm", "top1_err", 30, 600),
            ["erm", "calibration", "ece", float("nan"), 2.0, None, None, 600, False]]
    now = [["erm", "clean", "top1_err", float("nan"), float("nan"), float("nan"),
            float("nan"), 600, False],
           ["erm", "calibration", "ece", float("nan"), float("nan"), None, None, 600, False],
           ["erm", "clean", "top5_err", float("nan"), float("nan"), None, None, 600, False]]
    assert gate(tmp_path, base, now, "--tolerance", "1000") == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "rubench check FAILED: 3 of 3 metrics (3 INVALID)"


def test_nan_is_never_stored_as_a_baseline(tmp_path, capsys):
    write(tmp_path / "base", [["erm", "clean", "top1_err", float("nan"), float("nan"), None,
                               None, 600, False]])
    assert main(["baseline", str(tmp_path / "base"), "-o", str(tmp_path / "b.json")]) == 2
    assert "1 metric(s) are NaN (erm clean/top1_err)" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
    (tmp_path / "b.json").write_text(json.dumps({"format": 1, "metrics": [
        {"checkpoint": "erm", "task": "clean", "metric": "top1_err", "conditions": "",
         "value": None, "n": 600, "higher_is_better": False}]}))
    write(tmp_path / "now", [rate_row("erm", "top1_err", 30, 600)])
    assert main(["check", str(tmp_path / "now"), "--baseline", str(tmp_path / "b.json")]) == 2
    assert "NaN, missing or not numbers" in capsys.readouterr().err


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


def test_rows_without_direction_are_neither_stored_nor_gated(tmp_path, capsys):
    """A fitted temperature or a histogram bin is description, not a number that can fail."""
    kept = rate_row("erm", "top1_err", 30, 600)
    base = [kept, ["erm", "calibration", "temperature", float("nan"), 1.5, None, None, 100, None],
            ["erm", "ood", "score_hist", 0.25, 40.0, None, None, 600, None]]
    now = [kept, ["erm", "calibration", "temperature", float("nan"), 3.5, None, None, 100, None]]
    assert gate(tmp_path, base, now) == 0
    assert capsys.readouterr().out.startswith("rubench check passed: 1 metrics (1 ok)")
    stored = json.loads((tmp_path / "b.json").read_text())["metrics"]
    assert [m["metric"] for m in stored] == ["top1_err"]


def test_old_baselines_with_descriptive_rows_still_work(tmp_path, capsys):
    kept = rate_row("erm", "top1_err", 30, 600)
    write(tmp_path / "now", [kept])
    (tmp_path / "b.json").write_text(json.dumps({"format": 1, "metrics": [
        {"checkpoint": "erm", "task": "clean", "metric": "top1_err", "conditions": "",
         "value": kept[4], "ci_low": kept[5], "ci_high": kept[6], "n": 600,
         "higher_is_better": False},
        {"checkpoint": "erm", "task": "ood", "metric": "score_hist", "conditions": "bin=3",
         "value": 4.0, "n": 600, "higher_is_better": None}]}))
    assert main(["check", str(tmp_path / "now"), "--baseline", str(tmp_path / "b.json")]) == 0
    assert capsys.readouterr().out.startswith("rubench check passed: 1 metrics (1 ok)")


def test_check_and_help_do_not_import_torch(tmp_path):
    """`--help`, `baseline` and `check` answer without loading torch (seconds of start-up)."""
    rows = [rate_row("erm", "top1_err", 30, 600)]
    write(tmp_path / "base", rows)
    script = f"""
import sys
from benchmark.cli import main
assert main(["baseline", {str(tmp_path / "base")!r}, "-o", {str(tmp_path / "b.json")!r}]) == 0
assert main(["check", {str(tmp_path / "base")!r}, "--baseline", {str(tmp_path / "b.json")!r}]) == 0
try:
    main(["--help"])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "torchvision", "foolbox", "matplotlib") if m in sys.modules)
assert not heavy, heavy
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("content", [
    '{"format": 1}', '{"format": 1, "metrics": 5}', '{"format": 1, "metrics": [5]}',
    '{"format": 1, "metrics": [{"checkpoint": "erm"}]}', b"\xff\xfe\x00binary",
    '{"format": 1, "metrics": [{"checkpoint": "erm", "task": "clean", "metric": "top1_err", '
    '"conditions": "", "value": "high", "n": 1, "higher_is_better": false}]}',
    '{"format": 2, "metrics": [{"checkpoint": "erm", "task": "clean", "metric": "top1_err", '
    '"conditions": 5, "value": 1, "n": 1, "higher_is_better": false}]}',
    "directory"])
def test_malformed_baseline_exits_2_naming_the_file(tmp_path, capsys, content):
    """Exit 1 means 'regressed': a broken baseline must never look like that."""
    write(tmp_path / "now", [rate_row("erm", "top1_err", 30, 600)])
    baseline = tmp_path / "b.json"
    if content == "directory":
        baseline.mkdir()
    elif isinstance(content, bytes):
        baseline.write_bytes(content)
    else:
        baseline.write_text(content)
    assert main(["check", str(tmp_path / "now"), "--baseline", str(baseline)]) == 2
    assert f"rubench: error: {baseline}" in capsys.readouterr().err


def test_an_infinite_metric_is_stored_and_compared(tmp_path, capsys):
    """A median norm is +inf when most attacks fail: storable, equal to itself, and a fall
    from a finite value to inf (higher is better) is no regression."""
    row = ["erm", "cw", "median_norm", float("nan"), float("inf"), None, None, 50, True]
    assert gate(tmp_path, [row], [row]) == 0
    assert '"value": Infinity' in (tmp_path / "b.json").read_text()
    finite = [*row[:4], 0.8, *row[5:]]
    assert gate(tmp_path, [finite], [row]) == 0
    assert gate(tmp_path, [row], [finite]) == 1
    capsys.readouterr()


@pytest.mark.parametrize("flag", ["--output", "--tolerances"])
def test_unwritable_or_unreadable_gate_files_exit_2(tmp_path, capsys, flag):
    rows = [rate_row("erm", "top1_err", 30, 600)]
    target = tmp_path / "missing-folder" / "x.csv" if flag == "--output" else tmp_path
    assert gate(tmp_path, rows, rows, flag, str(target)) == 2
    assert f"rubench: error: {target}" in capsys.readouterr().err
    assert main(["baseline", str(tmp_path / "base"), "-o",
                 str(tmp_path / "no" / "b.json")]) == 2


def test_a_tolerance_for_no_metric_is_warned_about(tmp_path, capsys):
    rows = [rate_row("erm", "top1_err", 30, 600)]
    assert gate(tmp_path, rows, rows, "--tolerance-for", "top1_eer=5",
                "--tolerance-for", "clean/top1_err=1", "--tolerance-for", "top*=2") == 0
    err = capsys.readouterr().err
    assert "tolerance for 'top1_eer' matches no metric" in err
    assert "'clean/top1_err'" not in err and "'top*'" not in err


def test_a_format_1_baseline_still_matches_structured_conditions(tmp_path):
    """Format 1 wrote conditions as text ("eps=0.5, severity=3"); read back, they key the same
    metrics as a results.csv whose severity column reads 3.0."""
    rows = [rate_row("erm", "top1_err", 30, 600, eps=0.5), rate_row("erm", "top1_err", 20, 600)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.insert(frame.columns.get_loc("eps") + 1, "severity", [3, None])  # reads back as 3.0
    (tmp_path / "now").mkdir()
    frame.to_csv(tmp_path / "now" / "results.csv", index=False)
    legacy = {"format": 1, "metrics": [
        {"checkpoint": "erm", "task": "clean", "metric": "top1_err",
         "conditions": "eps=0.5, severity=3", "value": 2.0, "n": 600,
         "higher_is_better": False},
        {"checkpoint": "erm", "task": "clean", "metric": "top1_err", "conditions": "",
         "value": 100 * 20 / 600, "n": 600, "higher_is_better": False}]}
    (tmp_path / "b.json").write_text(json.dumps(legacy))
    verdicts = compare(read_baseline(tmp_path / "b.json"), read_results(tmp_path / "now"),
                       Tolerances(default=0.5, sampling_noise=False))
    assert sorted(v.verdict for v in verdicts) == ["REGRESSED", "ok"]
