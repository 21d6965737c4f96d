"""Figures that are not plain sweeps: reliability diagrams, OOD score histograms, and error vs
severity per corruption category. Each takes the results rows of one task and writes PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchmark.names import BENCHMARK_GROUP, ID_SET
from reports.files import write_atomic

MAX_COLUMNS = 4


# Axis labels of the metrics and sweep conditions the figures draw (rates are percent).
METRIC_LABELS = {
    "top1_err": "top-1 error (%)", "top5_err": "top-5 error (%)",
    "fgsm_top1_err": "FGSM top-1 error (%)", "mean_err": "mean error (%)",
    "occlusion_err": "occlusion error (%)", "neither_rate": "predicted as neither class (%)",
    "severity_err": "top-1 error (%)", "corruption_err": "corruption error (%)",
    "category_err": "category error (%)", "fail_rate": "attack failures (%)",
    "median_norm": "median perturbation norm", "zero_grad_rate": "zero gradients (%)",
}
SWEEP_LABELS = {"eps": "eps (perturbation budget)", "severity": "severity",
                "hole_frac": "hole side (fraction of the image side)",
                "lam": "lambda (share of the second image)"}
LEGEND_WIDTH = 1.9  # inches right of the panels for a figure-wide legend


def metric_label(metric: str) -> str:
    """A metric's axis label, with its unit where it has one."""
    return METRIC_LABELS.get(metric, metric)


def columns_for(count: int) -> int:
    """Panels per row: at most MAX_COLUMNS, leaving the fewest empty cells (then the widest)."""
    if count <= MAX_COLUMNS:
        return max(1, count)
    return min(range(2, MAX_COLUMNS + 1), key=lambda c: ((-count) % c, -c))


def panel_grid(count: int, width: float = 4.2, height: float = 3.4, legend: bool = False
               ) -> tuple[Figure, list[Axes]]:
    """A figure with `count` panels in rows chosen by `columns_for`; spare cells hidden; with
    `legend`, room on the right for a figure-wide legend (`legend_right`)."""
    columns = columns_for(count)
    rows = -(-count // columns)
    figure = Figure(figsize=(width * columns + (LEGEND_WIDTH if legend else 0), height * rows))
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for axis in axes[count:]:
        axis.set_visible(False)
    return figure, axes[:count]


def legend_right(figure: Figure, axes: list[Axes]) -> None:
    """One legend for the whole figure, right of the panels (it never covers data); the
    entries of every panel, each label once."""
    entries: dict[str, object] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        figure.legend(list(entries.values()), list(entries), loc="center right", fontsize=7,
                      frameon=False)


VECTOR_FORMATS = ("svg", "pdf")


def save(figure: Figure, title: str, path: Path, vector: str | None = None) -> Path:
    """Title, lay out (leaving a figure-wide legend its room) and write `figure` as a PNG at
    `path` (what the HTML page shows) and, with `vector` ("svg" or "pdf"), beside it in that
    format for papers; returns the PNG's path."""
    figure.suptitle(title, fontsize=10)
    right = 1.0
    if figure.legends:
        right = 1.0 - LEGEND_WIDTH / figure.get_figwidth()
    figure.tight_layout(rect=(0.0, 0.0, right, 1.0))
    if vector is not None:
        write_atomic(path.with_suffix(f".{vector}"), figure.savefig)
    return write_atomic(path, lambda temporary: figure.savefig(temporary, dpi=110))


def _metric(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    return rows[rows["metric"] == name]


def reliability_diagrams(rows: pd.DataFrame, path: Path, vector: str | None = None
                         ) -> list[Path]:
    """Guo et al.'s reliability diagram per checkpoint and scaling: accuracy per confidence bin
    (bars), the gap to the bin's mean confidence (red), the diagonal of perfect calibration."""
    accuracy = _metric(rows, "reliability_accuracy")
    if accuracy.empty:
        return []
    counts = _metric(rows, "reliability_count")
    bins = int(counts["bin"].max()) + 1 if not counts.empty else int(accuracy["bin"].max()) + 1
    width = 1.0 / bins
    panels = list(accuracy.groupby(["checkpoint", "scaling"], sort=True))
    figure, axes = panel_grid(len(panels), 3.4, 3.4)
    for axis, ((checkpoint, scaling), panel) in zip(axes, panels, strict=True):
        panel = panel.sort_values("bin")
        confidence = _metric(rows, "reliability_confidence")
        confidence = confidence[(confidence["checkpoint"] == checkpoint)
                                & (confidence["scaling"] == scaling)].set_index("bin")["value"]
        centres = (panel["bin"].to_numpy() + 0.5) * width
        acc = panel["value"].to_numpy() / 100
        conf = confidence.reindex(panel["bin"]).to_numpy() / 100
        axis.bar(centres, acc, width=width, color="tab:blue", edgecolor="k", linewidth=0.5,
                 label="accuracy")
        axis.bar(centres, conf - acc, bottom=acc, width=width, fill=False, hatch="///",
                 edgecolor="tab:red", linewidth=0.8, label="gap to mean confidence")
        axis.plot([0, 1], [0, 1], "k--", linewidth=1)
        ece = rows[(rows["metric"] == "ece") & (rows["checkpoint"] == checkpoint)
                   & (rows["scaling"] == scaling)]["value"]
        label = f"ECE {ece.iloc[0]:.2f} %" if not ece.empty else ""
        axis.text(0.96, 0.04, label, transform=axis.transAxes, fontsize=8, ha="right")
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        axis.set_title(f"{checkpoint} (scaling={scaling})", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left")
    return [save(figure, f"{rows['task'].iloc[0]}: reliability diagrams ({bins} bins)", path,
                 vector)]


def ood_histograms(rows: pd.DataFrame, path: Path, vector: str | None = None
                   ) -> list[Path]:
    """Per scorer, one panel per checkpoint: the share of each set's samples per score bin,
    the in-distribution set in black (ID should sit to the right: higher = more ID)."""
    hist = _metric(rows, "score_hist")
    centres = _metric(rows, "score_hist_centre")[["checkpoint", "scorer", "bin", "value"]]
    hist = hist.merge(centres.rename(columns={"value": "centre"}),
                      on=["checkpoint", "scorer", "bin"], how="left")
    written = []
    for scorer, per_scorer in hist.groupby("scorer", sort=True):
        panels = list(per_scorer.groupby("checkpoint", sort=True))
        figure, axes = panel_grid(len(panels), 4.2, 3.2, legend=True)
        for axis, (checkpoint, panel) in zip(axes, panels, strict=True):
            names = sorted(panel["ood_set"].unique(), key=lambda s: (s != ID_SET, s))
            for index, name in enumerate(names):
                curve = panel[panel["ood_set"] == name].sort_values("bin")
                at = curve["centre"].to_numpy(dtype=float)
                step = np.diff(at).min() if len(at) > 1 else 1.0
                edges = np.append(at - step / 2, at[-1] + step / 2)
                own = name == ID_SET
                axis.stairs(curve["value"].to_numpy(), edges, fill=own, alpha=0.3 if own else 1,
                            color="k" if own else f"C{index - 1}", linewidth=1.2,
                            label="in-distribution" if own else name)
            axis.set(xlabel=f"{scorer} score", ylabel="% of the set")
            axis.xaxis.set_major_locator(MaxNLocator(nbins=4))  # long scores never overlap
            axis.set_title(checkpoint, fontsize=9)
            axis.grid(alpha=0.3)
        legend_right(figure, axes)
        target = path.with_name(f"{path.stem}__{scorer}{path.suffix}")
        written.append(save(figure, f"{rows['task'].iloc[0]}: {scorer} score histograms",
                             target, vector))
    return written


GROUP_TITLES = {BENCHMARK_GROUP: "the 15 benchmark corruptions"}


def corruption_categories(rows: pd.DataFrame, path: Path, vector: str | None = None
                          ) -> list[Path]:
    """Top-1 error vs severity, one panel per corruption category (the task's `severity_err`
    rows: the mean over its corruptions at each severity) and one over the 15 benchmark
    corruptions; one line per checkpoint, its 95 % interval shaded."""
    means = _metric(rows, "severity_err").dropna(subset=["category", "severity"])
    if means.empty:
        return []
    by = ["source"] if "source" in means and means["source"].nunique() > 1 else []
    order = list(dict.fromkeys(means["category"]))  # the task's order: categories, then all
    panels = sorted(means.groupby([*by, "category"]),
                    key=lambda item: (item[0][:-1], order.index(item[0][-1])))
    figure, axes = panel_grid(len(panels), legend=True)
    for axis, (key, panel) in zip(axes, panels, strict=True):
        for checkpoint, line in panel.groupby("checkpoint", sort=True):
            line = line.sort_values("severity")
            drawn = axis.plot(line["severity"], line["value"], marker="o", markersize=3,
                              label=checkpoint)
            if {"ci_low", "ci_high"} <= set(line) and line["ci_low"].notna().all():
                axis.fill_between(line["severity"], line["ci_low"], line["ci_high"],
                                  color=drawn[0].get_color(), alpha=0.15, linewidth=0)
        axis.set_title(", ".join(GROUP_TITLES.get(str(k), str(k)) for k in key), fontsize=9)
        axis.set(xlabel="severity", ylabel="top-1 error (%)")
        axis.set_xticks(sorted(panel["severity"].unique()))
        axis.grid(alpha=0.3)
    legend_right(figure, axes)
    sources = rows["source"].dropna().unique() if "source" in rows else []
    label = f" ({sources[0]} data)" if len(sources) == 1 else ""
    return [save(figure, f"{rows['task'].iloc[0]}: top-1 error vs severity per category "
                 f"(mean over its corruptions){label}", path, vector)]


# (task type, metric) -> the figure drawn for that detail instead of a generic sweep plot.
# OOD score histograms have no detail table (see reports.details.HIDDEN_PREFIXES); the report
# draws them directly.
SPECIAL = {
    ("corruptions", "severity_err"): corruption_categories,
}
