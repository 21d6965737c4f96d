"""Reports from a fixed results.csv: golden leaderboard, detail tables, plots, HTML."""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.details import details, flat
from reports.errors import ReportError
from reports.html import write_report
from reports.leaderboard import leaderboard, to_markdown, write_leaderboard

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
    assert list(frame.columns) == ["Clean err", "FGSM err (eps=0.1)", "FGSM err (eps=0.2)",
                                   "OOD AUROC", "ECE", "Average"]
    assert frame.at["mixup", "OOD AUROC"] == 85.0  # the msp scorer, not energy (80.0)
    assert frame.at["cutout", "Average"] == pytest.approx((1.0 + 45.0 + 85.0) / 3)
    assert table.higher_is_better["OOD AUROC"] and not table.higher_is_better["ECE"]
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
    assert set(found) == {("fgsm", "top1_err"), ("ood", "auroc"), ("occlusion", "top1_err")}
    fgsm = flat(found[("fgsm", "top1_err")])
    assert list(fgsm.columns) == ["eps=0.1, space=pixel", "eps=0.2, space=pixel"]
    assert fgsm.at["mixup", "eps=0.2, space=pixel"] == 60.0
    occlusion = flat(found[("occlusion", "top1_err")])
    assert occlusion.at["erm", "mode=center, hole_frac=0.5"] == pytest.approx(14.5)


def test_report_writes_plots_and_self_contained_html(out_dir):
    written = write_report(out_dir, baseline="erm")
    plots = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in plots} == {"fgsm__top1_err.png", "occlusion__top1_err.png"}
    for path in plots:
        pixels = np.asarray(Image.open(path).convert("L"))
        assert pixels.shape[0] > 200 and pixels.std() > 5  # a drawn figure, not a blank canvas
    page = (out_dir / "report" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: opens offline
    assert "<b>92.50 (+2.50)</b>" in page
    assert (out_dir / "report" / "occlusion__top1_err.csv").is_file()


def test_missing_results_is_a_report_error(tmp_path):
    with pytest.raises(ReportError, match=r"no results\.csv"):
        write_report(tmp_path)
