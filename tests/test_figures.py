"""Figures people can read: labelled axes with units, budgets written as papers write them,
one legend beside the panels, and grids without needless empty cells."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import reports.details as details
from reports.figures import columns_for


@pytest.mark.parametrize(("count", "columns"), [(1, 1), (3, 3), (4, 4), (5, 3), (6, 3),
                                                (7, 4), (8, 4), (9, 3), (10, 2), (11, 4)])
def test_grids_leave_the_fewest_empty_cells(count, columns):
    assert columns_for(count) == columns


def _sweep_rows() -> pd.DataFrame:
    rows = []
    for checkpoint, shift in (("erm", 0.0), ("mixup", 5.0)):
        for k in (2, 4, 8):
            rows.append({"checkpoint": checkpoint, "task": "pgd", "metric": "top1_err",
                         "eps": k / 255, "norm": "linf", "value": 10.0 * k + shift,
                         "ci_low": 10.0 * k + shift - 2, "ci_high": 10.0 * k + shift + 2,
                         "n": 100, "higher_is_better": False, "task_type": "pgd"})
    return pd.DataFrame(rows)


def test_a_sweep_plot_labels_its_axes_and_writes_budgets_as_k_over_255(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(details, "save", lambda figure, title, path, vector: drawn.append(
        (figure, title)) or Path(path))
    (detail,) = details.details(_sweep_rows())
    assert details.plot(detail, tmp_path / "pgd.png") == [tmp_path / "pgd.png"]
    figure, title = drawn[0]
    axis = figure.axes[0]
    assert title == "pgd: top-1 error (%) vs eps"
    assert axis.get_ylabel() == "top-1 error (%)"
    assert axis.get_xlabel() == "eps (perturbation budget)"
    assert [t.get_text() for t in axis.get_xticklabels()] == ["2/255", "4/255", "8/255"]
    assert axis.get_legend() is None  # one legend for the figure, beside the panels
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["erm", "mixup"]


def test_report_writes_vector_figures_and_its_page_follows_columns(tmp_path):
    from test_runner import make_zoo

    from benchmark.cli import main

    make_zoo(tmp_path / "zoo", seeds=(0, 1))
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", "digits", "--tasks",
                 "clean,fgsm", "--limit", "60", "--data-root", str(tmp_path / "data"),
                 "--out", str(out), "--no-progress"]) == 0
    assert main(["report", str(out), "--vector", "svg", "--columns", "Clean err",
                 "--no-progress"]) == 0
    png = out / "report" / "fgsm__top1_err.png"
    svg = png.with_suffix(".svg")
    assert png.is_file() and "<svg" in svg.read_text()[:2000]
    assert "top-1 error (%)" in svg.read_text()  # the figure itself, as vector text
    page = (out / "report" / "index.html").read_text()
    headline = page.split("<table", 2)[1]  # the leaderboard comes first
    assert "Clean err" in headline and "FGSM err" not in headline
    assert "FGSM err" not in (out / "leaderboard.md").read_text().splitlines()[2]
