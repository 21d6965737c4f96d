"""Reports from a fixed results.csv: golden leaderboard, detail tables, plots, HTML."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.details import details, flat
from reports.errors import ReportError
from reports.html import write_report
from reports.leaderboard import leaderboard, provenance, to_markdown, write_leaderboard

DATA = Path(__file__).parent / "data"


@pytest.fixture
def out_dir(tmp_path):
    shutil.copy(DATA / "report_results.csv", tmp_path / "results.csv")
    return tmp_path


def test_leaderboard_matches_golden_file(out_dir):
    """Golden made by tests/data/make_report_fixture.py --golden; its numbers checked by hand."""
    markdown, _ = write_leaderboard(out_dir, baseline="erm")
    assert markdown.read_text() == (DATA / "report_leaderboard.md").read_text()


def test_leaderboard_values_directions_average_and_omitted_columns(out_dir):
    results = pd.read_csv(out_dir / "results.csv")
    table = leaderboard(results)
    frame = table.values
    auroc, ece = "OOD AUROC (MSP, mean over sets)", "ECE (no scaling)"  # headers say what
    # FGSM at the headline budget only (the smaller of two eps run by one attack each)
    assert list(frame.columns) == ["Clean err", "FGSM err (eps=0.1)", auroc, ece, "Average"]
    assert frame.at["mixup", auroc] == 85.0  # the msp scorer, not energy (80.0)
    # one error per family: clean, and adversarial (no robust error: the FGSM error)
    assert frame.at["cutout", "Average"] == pytest.approx((1.0 + 45.0) / 2)
    assert table.in_average == ["Clean err", "FGSM err (eps=0.1)"]
    assert table.higher_is_better[auroc] and not table.higher_is_better[ece]
    assert table.ci_low.at["erm", "Clean err"] == 1.0
    assert "Occlusion err" not in frame  # no data -> no column, never zeros


def test_markdown_bolds_best_per_direction_and_writes_deltas(out_dir):
    table = leaderboard(pd.read_csv(out_dir / "results.csv"))
    markdown = to_markdown(table, baseline="erm")
    cutout = next(line for line in markdown.splitlines() if line.startswith("| cutout"))
    assert "**92.50 (+2.50)**" in cutout  # highest AUROC is best
    assert "**1.00 (-0.50)**" in cutout  # lowest clean error is best
    erm = next(line for line in markdown.splitlines() if line.startswith("| erm"))
    assert "(" not in erm  # the baseline row carries no deltas
    with pytest.raises(ReportError, match="'nobody' is not a checkpoint"):
        to_markdown(table, baseline="nobody")
    assert "± 0.55" in to_markdown(table, show_ci=True)


def test_detail_tables_pivot_conditions(out_dir):
    found = {(d.task, d.metric): d for d in details(pd.read_csv(out_dir / "results.csv"))}
    # flags are listed together, binned rows (histograms, reliability) only drawn; ece varies
    # nothing (scaling=none)
    assert set(found) == {("fgsm", "top1_err"), ("ood", "auroc"), ("occlusion", "top1_err"),
                          ("calibration", "ece"), ("corruptions", "top1_err"),
                          ("corruptions", "severity_err")}
    fgsm = flat(found[("fgsm", "top1_err")])
    assert list(fgsm.columns) == ["eps=0.1, space=pixel", "eps=0.2, space=pixel"]
    assert fgsm.at["mixup", "eps=0.2, space=pixel"] == 60.0
    bounds = found[("fgsm", "top1_err")]
    assert bounds.low.loc["mixup"].tolist() == [27.0, 57.0]
    assert bounds.high.loc["mixup"].tolist() == [34.0, 63.0]
    assert found[("occlusion", "top1_err")].low is None  # no interval, nothing shaded
    occlusion = flat(found[("occlusion", "top1_err")])
    assert occlusion.at["erm", "hole_frac=0.5, mode=center"] == pytest.approx(14.5)


def test_report_writes_plots_and_self_contained_html(out_dir):
    written = write_report(out_dir, baseline="erm")
    plots = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in plots} == {"fgsm__top1_err.png", "occlusion__top1_err.png",
                                       "calibration__reliability.png",
                                       "corruptions__severity_err.png", "corruptions__top1_err.png",
                                       "ood__score_hist__msp.png"}
    for path in plots:
        pixels = np.asarray(Image.open(path).convert("L"))
        assert pixels.shape[0] > 200 and pixels.std() > 5  # a drawn figure, not a blank canvas
    page = (out_dir / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(plots)
    assert "9 sanity checks of the attacks, 1 raised" in page
    assert "flag_below_clean" in (out_dir / "report" / "sanity_flags.md").read_text()
    # nothing to fetch: opens offline (links are anchors within the page)
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<b>92.50 (+2.50)</b>" in page
    assert (out_dir / "report" / "occlusion__top1_err.csv").is_file()


def test_sanity_flags_sit_beside_the_numbers_they_concern(out_dir):
    results = pd.read_csv(out_dir / "results.csv")
    table = leaderboard(results, "all")
    assert table.flags == {("mixup", "FGSM err (eps=0.2)"): ["flag_below_clean"]}
    assert leaderboard(results).flags == {}  # eps 0.2 is not the headline budget: not shown
    # a flag without eps concerns every eps of that task and checkpoint, and nothing else
    zero_grad = (results["metric"] == "flag_zero_grad") & (results["checkpoint"] == "erm")
    results.loc[zero_grad, "value"] = 1.0
    flagged = leaderboard(results, "all").flags
    assert flagged[("erm", "FGSM err (eps=0.1)")] == ["flag_zero_grad"]
    assert flagged[("erm", "FGSM err (eps=0.2)")] == ["flag_zero_grad"]
    assert not any(column.startswith(("Clean", "OOD")) for _, column in flagged)
    assert leaderboard(results).flags == {("erm", "FGSM err (eps=0.1)"): ["flag_zero_grad"]}
    write_leaderboard(out_dir, columns="all")
    csv = pd.read_csv(out_dir / "leaderboard.csv", index_col="checkpoint")
    assert csv.at["mixup", "FGSM err (eps=0.2) flags"] == "flag_below_clean"
    assert pd.isna(csv.at["erm", "FGSM err (eps=0.2) flags"])


def test_same_conditions_from_two_tasks_of_one_type_get_their_own_columns(out_dir):
    """With `--columns all`; the headline shows the task named after the type."""
    results = pd.read_csv(out_dir / "results.csv")
    clean = results[results["task"] == "clean"].assign(task="clean_again")
    clean["value"] += 1.0
    table = leaderboard(pd.concat([results, clean]), "all")
    assert table.values.at["erm", "Clean err (task=clean)"] == 1.5
    assert table.values.at["erm", "Clean err (task=clean_again)"] == 2.5
    headline = leaderboard(pd.concat([results, clean])).values
    assert headline.at["erm", "Clean err"] == 1.5
    assert not headline.columns.str.startswith("Clean err (").any()


def test_missing_results_is_a_report_error(tmp_path):
    with pytest.raises(ReportError, match=r"no results\.csv"):
        write_report(tmp_path)


def test_generated_data_is_labelled_in_the_header_and_the_provenance(out_dir):
    results = pd.read_csv(out_dir / "results.csv")
    noise = results[results["metric"] == "top1_err"].head(1).assign(
        task="corruptions", task_type="corruptions", metric="category_err", category="noise",
        source="generated", value=12.0)
    table = leaderboard(pd.concat([results, noise]))
    assert "Noise err (generated)" in table.values
    assert "source=generated" in provenance(results)
    assert "generated" not in provenance(results[results["task"] != "corruptions"])


def test_figures_stay_bounded_for_many_checkpoints(tmp_path):
    """40 checkpoints: every table lists all 40, the figures show the baseline and the 11 with
    the lowest clean error, and the page says so; no figure grows with the checkpoint count."""
    source = pd.read_csv(DATA / "report_results.csv")
    names = sorted(source["checkpoint"].unique())
    frames = []
    for i in range(40):
        frame = source[source["checkpoint"] == names[i % len(names)]].copy()
        frame["checkpoint"] = f"m{i:02d}"
        clean = (frame["task"] == "clean") & (frame["metric"] == "top1_err")
        frame.loc[clean, "value"] = 50.0 - i  # m39 is best, m00 worst
        frames.append(frame)
    pd.concat(frames).to_csv(tmp_path / "results.csv", index=False)
    written = write_report(tmp_path, baseline="m00")
    page = (tmp_path / "report" / "index.html").read_text()
    shown = ["m00", *(f"m{i}" for i in range(29, 40))]
    assert "Figures show 12 of 40 checkpoints (" + ", ".join(sorted(shown)) + ")" in page
    tables = [p for p in written if p.suffix == ".csv" and p.parent.name == "report"]
    assert tables and all(len(pd.read_csv(p, header=None)) >= 40 for p in tables
                          if "sanity" not in p.name)
    for image in (p for p in written if p.suffix == ".png"):
        assert Image.open(image).size[1] < 2500, image.name
    assert not list((tmp_path / "report").glob(".*tmp*"))


def test_summary_is_a_narrow_digest_of_the_leaderboard(out_dir):
    """What `rubench demo` prints: a few headline columns, not the 25-column table."""
    from reports.leaderboard import summary

    table = leaderboard(pd.read_csv(out_dir / "results.csv"))
    text = summary(table)
    header = text.splitlines()[0]
    assert header.split() == ["Clean", "err", "↓", "OOD", "AUROC", "(MSP,", "mean", "over",
                              "sets)", "↑", "ECE", "(no", "scaling)", "↓", "Average", "↓"]
    assert "FGSM" not in text and max(len(line) for line in text.splitlines()) < 100
    mixup = next(line for line in text.splitlines() if line.startswith("mixup"))
    assert mixup.split()[1:] == [f"{v:.2f}" for v in table.values.loc[
        "mixup", ["Clean err", "OOD AUROC (MSP, mean over sets)", "ECE (no scaling)",
                  "Average"]]]


def test_eps_of_k_over_255_is_written_as_papers_write_it():
    from reports.leaderboard import format_condition

    assert format_condition(8 / 255, "eps") == "8/255"
    assert format_condition(2 / 255, "eps") == "2/255"
    assert format_condition(0.0625, "eps") == "0.0625"  # 15.94 levels: not k/255
    assert format_condition(0.5, "eps") == "0.5" and format_condition(1.0, "eps") == "1"
    assert format_condition(0.2, "eps") == "0.2"  # 51/255 too, but nobody writes it so
    assert format_condition(8 / 255, "lam") == "0.0313725"  # only eps is a budget


def test_ood_headers_count_the_sets_behind_the_mean(out_dir):
    results = pd.read_csv(out_dir / "results.csv")
    per_set = results[(results["metric"] == "auroc") & (results["ood_set"] == "mean")].copy()
    extra = [per_set.assign(ood_set=name) for name in ("lsun", "isun")]
    table = leaderboard(pd.concat([results, *extra], ignore_index=True))
    assert "OOD AUROC (MSP, mean over 2 sets)" in table.values.columns


def test_detail_tables_write_each_column_as_its_numbers_need():
    """ODIN's eps is not 0.00, a Brier score not 0.02, a count not 3.00."""
    from reports.details import markdown_table

    frame = pd.DataFrame({"odin_eps": [0.0014, 0.0], "brier": [0.0213, 0.0871],
                          "reliability_count": [3.0, 12.0], "top1_err": [12.5, float("nan")]},
                         index=pd.Index(["erm", "mixup"], name="checkpoint"))
    lines = markdown_table(frame).splitlines()
    assert lines[2] == "| erm | 0.0014 | 0.0213 | 3 | 12.50 |"
    assert lines[3] == "| mixup | 0 | 0.0871 | 12 |  |"


def test_reports_import_no_measurement_package():
    """Reports read results, artifacts and records only: no model code, no torch."""
    script = ("import sys, reports.html, reports.check, reports.leaderboard\n"
              "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('torch', 'attacks', 'corruptions', 'ood') or m.startswith('benchmark.tasks'))\n"
              "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_baseline_deltas_marked_where_the_paired_test_says_so(out_dir):
    table = leaderboard(pd.read_csv(out_dir / "results.csv"))
    asked = []

    def significance(row, baseline):
        asked.append((row, baseline))
        return row[0] == "mixup" and row[1] == "clean"

    markdown = to_markdown(table, baseline="erm", significance=significance)
    lines = {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines()}
    assert "(+0.50*)" in lines["mixup"] and "*)" not in lines["cutout"]
    assert all(baseline[0] == "erm" and row[1:] == baseline[1:] for row, baseline in asked)
    assert "*)" not in to_markdown(table, baseline="erm")
