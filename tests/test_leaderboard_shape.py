"""The leaderboard's shape: one column per family at its headline budget, the per-family
Average, and `--columns` (names, families, `all`, unknown names)."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from reports.errors import ReportError
from reports.leaderboard import headline_budget, known_columns, leaderboard

DATA = Path(__file__).parent / "data"
FIXED = ("checkpoint", "task", "metric")
AFTER = ("value", "ci_low", "ci_high", "n", "higher_is_better", "task_type")
LINF = {"space": "pixel", "norm": "linf"}


def rows_of(checkpoint: str, shift: float) -> list[dict]:
    """A digits-like run: FGSM at three eps, I-FGSM at two, PGD Linf at one and L2 at one,
    robust errors per budget, two occlusion fills, corruptions, affine, OOD, calibration."""
    out = []

    def add(task, metric, value, task_type=None, higher=False, **conditions):
        out.append({"checkpoint": checkpoint, "task": task, "metric": metric, **conditions,
                    "value": value + shift, "ci_low": None, "ci_high": None, "n": 600,
                    "higher_is_better": higher, "task_type": task_type or task})

    add("clean", "top1_err", 2.0)
    for eps, err in ((1 / 32, 8.0), (1 / 16, 20.0), (1 / 8, 50.0)):
        add("fgsm", "top1_err", err, eps=eps, **LINF)
    for eps, err in ((1 / 16, 25.0), (1 / 8, 60.0)):
        add("ifgsm", "top1_err", err, eps=eps, **LINF)
    add("pgd", "top1_err", 28.0, eps=1 / 16, **LINF)
    add("pgd_l2", "top1_err", 70.0, "pgd", eps=0.5, space="pixel", norm="l2")
    add("worst_case", "top1_err", 30.0, attacks="fgsm, ifgsm, pgd", eps=1 / 16, **LINF)
    add("worst_case", "top1_err", 65.0, attacks="fgsm, ifgsm", eps=1 / 8, **LINF)
    add("worst_case", "top1_err", 72.0, attacks="pgd_l2", eps=0.5, space="pixel", norm="l2")
    add("occlusion", "occlusion_err", 40.0, fill="black")
    add("occlusion_mean", "occlusion_err", 35.0, "occlusion", fill="mean")
    for category, err in (("noise", 5.0), ("blur", 15.0), ("weather", 25.0), ("digital", 35.0)):
        add("corruptions", "category_err", err, category=category)
    add("corruptions", "mean_corruption_err", 20.0)
    add("corruptions", "mce", 90.0)
    add("affine", "mean_err", 10.0)
    for ood_set, auroc in (("mean", 90.0), ("uniform", 95.0), ("crops", 85.0)):
        add("ood", "auroc", auroc, higher=True, ood_set=ood_set, scorer="msp")
        add("ood", "auroc", auroc - 5, higher=True, ood_set=ood_set, scorer="energy")
    add("calibration", "ece", 3.0, scaling="none")
    add("calibration", "ece", 1.0, scaling="temperature")
    return out


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows in results.csv's column order: conditions between `metric` and `value`."""
    frame = pd.DataFrame(rows)
    conditions = sorted(set(frame.columns) - {*FIXED, *AFTER})
    return frame[[*FIXED, *conditions, *AFTER]]


@pytest.fixture
def results() -> pd.DataFrame:
    return results_frame(rows_of("a", 0.0) + rows_of("b", 1.0))


ROBUST = "Robust err (worst case over: fgsm, ifgsm, pgd; eps=0.0625)"
DEFAULT = ["Clean err", "FGSM err (eps=0.0625)", "I-FGSM err (eps=0.0625)",
           "PGD err (eps=0.0625)", ROBUST, "Occlusion err (fill=black)", "Noise err",
           "Blur err", "Weather err", "Digital err", "mCE", "Corruption err", "Affine err",
           "OOD AUROC (MSP, mean over 2 sets)", "ECE (no scaling)", "Average"]


def test_default_has_one_column_per_attack_at_the_headline_budget(results):
    """1/16 is the eps most attacks ran at (FGSM, I-FGSM and PGD; 1/32 only FGSM)."""
    assert headline_budget(results) == {"space": "pixel", "norm": "linf", "eps": 1 / 16}
    table = leaderboard(results)
    assert list(table.values.columns) == DEFAULT
    assert table.values.at["a", "FGSM err (eps=0.0625)"] == 20.0
    assert table.values.at["b", ROBUST] == 31.0
    assert table.values.at["a", "Occlusion err (fill=black)"] == 40.0  # task named `occlusion`
    assert "Attacks at one budget, eps=0.0625 (Linf, pixel space)" in table.legend[0]


def test_conventional_budget_is_written_as_papers_write_it(results):
    """On CIFAR-like budgets (FGSM at 2, 4, 8/255, PGD at 8/255) the headline is 8/255."""
    cifar = results[~results["task"].isin(["fgsm", "ifgsm", "pgd", "worst_case"])]
    extra = [{"checkpoint": "a", "task": task, "metric": "top1_err", "eps": levels / 255,
              "value": float(levels), "n": 600, "higher_is_better": False, "task_type": task,
              **LINF} for task, levels in (("fgsm", 2), ("fgsm", 4), ("fgsm", 8), ("pgd", 8))]
    table = leaderboard(results_frame(cifar.to_dict("records") + extra))
    attacks = [c for c in table.values.columns if c.startswith(("FGSM", "PGD"))]
    assert attacks == ["FGSM err (eps=8/255)", "PGD err (eps=8/255)"]


def test_average_is_the_mean_of_one_error_per_family(results):
    table = leaderboard(results)
    # clean 2, adversarial = robust error at the budget 30, occlusion 40, corruption 20,
    # affine 10: each family once, whatever its number of columns
    assert table.values.at["a", "Average"] == pytest.approx((2 + 30 + 40 + 20 + 10) / 5)
    assert table.values.at["b", "Average"] == pytest.approx((3 + 31 + 41 + 21 + 11) / 5)
    assert table.in_average == ["Clean err", ROBUST, "Occlusion err (fill=black)",
                                "Corruption err", "Affine err"]
    note = table.legend[-1]
    assert note.startswith("Average: the mean over the families")
    assert f"adversarial: {ROBUST}" in note and "corruption: Corruption err" in note


def test_without_robust_errors_the_strongest_attack_stands_for_the_family(results):
    table = leaderboard(results[results["task"] != "worst_case"])
    # the highest of FGSM 20, I-FGSM 25 and PGD 28 at the budget
    assert table.values.at["a", "Average"] == pytest.approx((2 + 28 + 40 + 20 + 10) / 5)
    assert "the highest of FGSM err (eps=0.0625), I-FGSM err (eps=0.0625), " \
           "PGD err (eps=0.0625)" in table.legend[-1]


def test_columns_select_and_order_names_and_families(results):
    table = leaderboard(results, "ece, CLEAN ERR, Average, corruption")
    assert list(table.values.columns) == ["ECE (no scaling)", "Clean err", "Noise err",
                                          "Blur err", "Weather err", "Digital err", "mCE",
                                          "Corruption err", "Average"]
    # the Average stays per family even where its columns are not shown
    assert table.values.at["a", "Average"] == pytest.approx(20.4)
    adversarial = leaderboard(results, ["adversarial"])
    assert list(adversarial.values.columns) == DEFAULT[1:5]  # no Average unless named
    assert "Attacks at one budget" in adversarial.legend[0]
    assert list(leaderboard(results, "ood").values.columns) == ["OOD AUROC (MSP, mean over 2 sets)"]


def test_unknown_column_is_refused_naming_the_known_ones(results):
    with pytest.raises(ReportError, match=r"unknown column.*'Bogus'.*known: Clean err, FGSM err"):
        leaderboard(results, "Clean err,Bogus")
    with pytest.raises(ReportError, match="'all' stands alone"):
        leaderboard(results, "all,Clean err")
    with pytest.raises(ReportError, match="no column; known"):
        leaderboard(results, " , ")
    assert {"Clean err", "adversarial", "Average", "all"} <= set(known_columns())


def test_all_reproduces_the_wide_table(results):
    """Every condition that varies its own column, as before the headline had one budget."""
    table = leaderboard(results, "all")
    assert list(table.values.columns) == [
        "Clean err", "FGSM err (eps=0.03125)", "FGSM err (eps=0.0625)", "FGSM err (eps=0.125)",
        "I-FGSM err (eps=0.0625)", "I-FGSM err (eps=0.125)",
        "PGD err (eps=0.0625, norm=linf)", "PGD err (eps=0.5, norm=l2)",
        "Robust err (worst case over: fgsm, ifgsm; eps=0.125, norm=linf)",
        "Robust err (worst case over: fgsm, ifgsm, pgd; eps=0.0625, norm=linf)",
        "Robust err (worst case over: pgd_l2; eps=0.5, norm=l2)",
        "Occlusion err (fill=black)", "Occlusion err (fill=mean)", "Noise err", "Blur err",
        "Weather err", "Digital err", "mCE", "Corruption err", "Affine err",
        "OOD AUROC (MSP, mean over 2 sets)", "ECE (no scaling)", "Average"]
    assert table.values.at["b", "PGD err (eps=0.5, norm=l2)"] == 71.0
    assert table.values.at["a", "Average"] == pytest.approx(20.4)  # the same per-family mean
    assert "Robust err (worst case over: fgsm, ifgsm, pgd; eps=0.0625, norm=linf)" in \
        table.legend[-1]  # named as this table names it
    assert not any(line.startswith("Attacks at one budget") for line in table.legend)


def test_report_columns_flag_writes_the_chosen_columns(tmp_path, capsys):
    shutil.copy(DATA / "report_results.csv", tmp_path / "results.csv")
    assert main(["report", str(tmp_path), "--columns", "ECE,Clean err"]) == 0
    header = (tmp_path / "leaderboard.md").read_text().splitlines()[2]
    assert header == "| checkpoint | ECE (no scaling) ↓ | Clean err ↓ |"
    assert main(["report", str(tmp_path), "--columns", "all"]) == 0
    board = pd.read_csv(tmp_path / "leaderboard.csv", index_col="checkpoint")
    assert {"FGSM err (eps=0.1)", "FGSM err (eps=0.2)"} <= set(board.columns)


def test_report_unknown_column_exits_2_before_writing(tmp_path, capsys):
    shutil.copy(DATA / "report_results.csv", tmp_path / "results.csv")
    assert main(["report", str(tmp_path), "--columns", "Clean err,FGSM"]) == 2
    err = capsys.readouterr().err
    assert "unknown column(s) 'FGSM'" in err
    assert "known: Clean err, FGSM err, I-FGSM err, PGD err" in err and "all" in err
    assert not (tmp_path / "leaderboard.md").exists()
