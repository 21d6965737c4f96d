"""Per-task detail tables and sweep plots (error vs eps, severity, hole size, ...) from results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from reports.leaderboard import ARROWS, condition_columns, direction

# Numeric conditions that form a curve when they vary, in order of preference for the x axis.
SWEEPS = ("eps", "severity", "hole_frac", "lam", "bin")


@dataclass(frozen=True)
class Detail:
    """One task's metric as a wide table: checkpoints x condition values."""

    task: str
    metric: str
    table: pd.DataFrame
    higher_is_better: bool | None


def details(results: pd.DataFrame) -> list[Detail]:
    """Every (task, metric) that has conditions varying, pivoted: rows checkpoints, columns the
    condition values (a MultiIndex when several conditions vary)."""
    conditions = condition_columns(results)
    out = []
    for (task, metric), rows in results.groupby(["task", "metric"], sort=False):
        varying = [c for c in conditions if rows[c].notna().any()]
        if not varying:
            continue
        table = rows.pivot_table(index="checkpoint", columns=varying, values="value",
                                 aggfunc="first", dropna=False)
        table = table.dropna(axis=1, how="all")
        out.append(Detail(task, metric, table, direction(rows["higher_is_better"].iloc[0])))
    return out


def _flat_header(table: pd.DataFrame) -> list[str]:
    names = table.columns.names
    headers = []
    for key in table.columns:
        key = key if isinstance(key, tuple) else (key,)
        headers.append(", ".join(f"{n}={v:g}" if isinstance(v, float) else f"{n}={v}"
                                 for n, v in zip(names, key, strict=True) if not pd.isna(v)))
    return headers


def flat(detail: Detail) -> pd.DataFrame:
    """The detail table with one readable header per column (`eps=0.1, norm=linf`)."""
    table = detail.table.copy()
    table.columns = _flat_header(detail.table)
    return table


def to_markdown(detail: Detail, digits: int = 2) -> str:
    """A Markdown table of one detail."""
    table = flat(detail)
    lines = [f"### {detail.task} / {detail.metric} {ARROWS[detail.higher_is_better]}",
             "", "| checkpoint | " + " | ".join(table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for name, row in table.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_axis(detail: Detail) -> str | None:
    """The condition to plot on the x axis, if the detail is a numeric sweep."""
    names = [n for n in detail.table.columns.names if n in SWEEPS]
    return names[0] if names else None


def plot(detail: Detail, path: Path) -> Path | None:
    """Line plot of the metric against its sweep condition, one line per checkpoint, one panel
    per value of the other varying conditions; None when the detail is not a sweep."""
    x = sweep_axis(detail)
    if x is None:
        return None
    long = detail.table.stack(list(detail.table.columns.names), future_stack=True)
    long = long.dropna().rename("value").reset_index()
    panels_by = [n for n in detail.table.columns.names if n != x]
    panels = list(long.groupby(panels_by, dropna=False)) if panels_by else [((), long)]
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    for axis, (key, panel) in zip(axes, panels, strict=False):
        for name, line in panel.groupby("checkpoint"):
            line = line.sort_values(x)
            axis.plot(line[x], line["value"], marker="o", markersize=3, label=name)
        key = key if isinstance(key, tuple) else (key,)
        axis.set_title(", ".join(f"{n}={v}" for n, v in zip(panels_by, key, strict=True)),
                       fontsize=9)
        axis.set_xlabel(x)
        axis.set_ylabel(detail.metric)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    figure.suptitle(f"{detail.task}: {detail.metric} vs {x}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
