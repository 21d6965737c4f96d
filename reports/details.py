"""Per-task detail tables and sweep plots (error vs eps, severity, hole size, ...) from results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.figures import SWEEP_LABELS, legend_right, metric_label, panel_grid, save
from reports.leaderboard import (
    ARROWS,
    FLAG_MEANINGS,
    condition_columns,
    direction,
    format_condition,
)

# Numeric conditions that form a curve when they vary, in order of preference for the x axis.
SWEEPS = ("eps", "severity", "hole_frac", "lam")
# Rows with no detail table: sanity flags (listed together, see `sanity_flags`) and histogram
# bins (drawn, see `reports.figures`).
HIDDEN_PREFIXES = ("flag_", "score_hist", "reliability_")  # flags; binned rows: figures


@dataclass(frozen=True)
class Detail:
    """One task's metric as a wide table: checkpoints x condition values; `low` / `high` hold
    the 95 % interval bounds in the same layout where the rows carry them."""

    task: str
    metric: str
    table: pd.DataFrame
    higher_is_better: bool | None
    task_type: str
    low: pd.DataFrame | None = None
    high: pd.DataFrame | None = None


def _wide(rows: pd.DataFrame, conditions: list[str], columns: list[str]) -> pd.DataFrame:
    """`columns` of `rows` pivoted: checkpoints x (column, the values of `conditions`), both
    sorted (the first row of a repeated key wins)."""
    keyed = rows[["checkpoint", *conditions, *columns]].set_index(["checkpoint", *conditions])
    keyed = keyed[~keyed.index.duplicated()]
    return keyed.unstack(conditions).sort_index(axis=0).sort_index(axis=1)


def details(results: pd.DataFrame) -> list[Detail]:
    """Every (task, metric) that has conditions varying, pivoted: rows checkpoints, columns the
    condition values (a MultiIndex when several conditions vary)."""
    conditions = condition_columns(results)
    has_bounds = "ci_low" in results
    out = []
    for (task, metric), rows in results.groupby(["task", "metric"], sort=False):
        if metric.startswith(HIDDEN_PREFIXES):
            continue
        varying = [c for c in conditions if rows[c].notna().any()]
        if not varying:
            continue
        bounded = has_bounds and rows["ci_low"].notna().any()
        wide = _wide(rows, varying, ["value", "ci_low", "ci_high"] if bounded else ["value"])
        table = wide["value"].dropna(axis=1, how="all")
        bounds = [wide[c].reindex(columns=table.columns) for c in ("ci_low", "ci_high")] \
            if bounded else [None, None]
        task_type = rows["task_type"].iloc[0] if "task_type" in rows else task
        out.append(Detail(task, metric, table, direction(rows["higher_is_better"].iloc[0]),
                          task_type, *bounds))
    return out


def sanity_flags(results: pd.DataFrame) -> pd.DataFrame:
    """Every sanity flag the attack tasks checked, one row each: checkpoint, task, flag, its
    conditions, raised (0/1), and what it means."""
    conditions = condition_columns(results)
    flags = results[results["metric"].str.startswith("flag_")]
    table = pd.DataFrame({
        "checkpoint": flags["checkpoint"], "task": flags["task"], "flag": flags["metric"],
        "conditions": [", ".join(f"{c}={format_condition(row[c], c)}" for c in conditions
                                 if not pd.isna(row[c])) for _, row in flags.iterrows()],
        "raised": flags["value"].astype(int),
        "meaning": flags["metric"].map(FLAG_MEANINGS).fillna("")})
    return table.reset_index(drop=True)




def _flat_header(table: pd.DataFrame) -> list[str]:
    names = table.columns.names
    headers = []
    for key in table.columns:
        key = key if isinstance(key, tuple) else (key,)
        headers.append(", ".join(f"{n}={format_condition(v, n)}"
                                 for n, v in zip(names, key, strict=True) if not pd.isna(v)))
    return headers


def flat(detail: Detail) -> pd.DataFrame:
    """The detail table with one readable header per column (`eps=0.1, norm=linf`)."""
    table = detail.table.copy()
    table.columns = _flat_header(detail.table)
    return table


def column_format(values: pd.Series, digits: int = 2) -> Callable[[object], str]:
    """How one column's numbers are written: integers as integers (counts), a column of
    magnitudes below 1 with 3 significant digits (ODIN's eps 0.0014, a Brier score 0.0213),
    others with `digits` decimals; missing values blank."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if len(numbers) and (numbers == numbers.round()).all():
        def text(v: float) -> str:
            return str(int(v))
    elif len(numbers) and numbers.abs().max() < 1:
        def text(v: float) -> str:
            return f"{v:.3g}"
    else:
        def text(v: float) -> str:
            return f"{v:.{digits}f}"

    def cell(value: object) -> str:
        if isinstance(value, float | int) and not isinstance(value, bool):
            return "" if pd.isna(value) else text(float(value))
        return str(value)

    return cell


def markdown_table(frame: pd.DataFrame, digits: int = 2, index: bool = True) -> str:
    """A Markdown table of `frame`, each column written by `column_format`."""
    formats = [column_format(frame[column], digits) for column in frame.columns]
    head = [frame.index.name or "", *map(str, frame.columns)] if index else list(
        map(str, frame.columns))
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, row in frame.iterrows():
        cells = [fmt(v) for fmt, v in zip(formats, row, strict=True)]
        lines.append("| " + " | ".join([str(name), *cells] if index else cells) + " |")
    return "\n".join(lines) + "\n"


def to_markdown(detail: Detail, digits: int = 2) -> str:
    """A Markdown table of one detail, under a heading naming task, metric and direction."""
    return (f"### {detail.task} / {detail.metric} {ARROWS[detail.higher_is_better]}".rstrip()
            + "\n\n" + markdown_table(flat(detail), digits))


def sweep_axis(detail: Detail) -> str | None:
    """The condition to plot on the x axis, if the detail is a numeric sweep."""
    names = [n for n in detail.table.columns.names if n in SWEEPS]
    return names[0] if names else None


def plot(detail: Detail, path: Path, vector: str | None = None) -> list[Path]:
    """Line plot of the metric against its sweep condition, one line per checkpoint with its
    95 % interval shaded where known, one panel per value of the other varying conditions;
    nothing when the detail is not a sweep."""
    x = sweep_axis(detail)
    if x is None:
        return []
    names = list(detail.table.columns.names)
    parts = {"value": detail.table, "ci_low": detail.low, "ci_high": detail.high}
    long = pd.concat({key: part.stack(names, future_stack=True) for key, part in parts.items()
                      if part is not None}, axis=1)
    long = long.dropna(subset=["value"]).reset_index()
    panels_by = [n for n in detail.table.columns.names if n != x]
    panels = list(long.groupby(panels_by, dropna=False)) if panels_by else [((), long)]
    figure, axes = panel_grid(len(panels), legend=True)
    for axis, (key, panel) in zip(axes, panels, strict=True):
        for name, line in panel.groupby("checkpoint"):
            line = line.sort_values(x)
            drawn = axis.plot(line[x], line["value"], marker="o", markersize=3, label=name)
            if "ci_low" in line and line["ci_low"].notna().all():
                axis.fill_between(line[x], line["ci_low"], line["ci_high"], alpha=0.15,
                                  color=drawn[0].get_color(), linewidth=0)
        key = key if isinstance(key, tuple) else (key,)
        axis.set_title(", ".join(f"{n}={format_condition(v, n)}" for n, v in zip(panels_by, key,
                                                                        strict=True)
                                 if not pd.isna(v)), fontsize=9)
        axis.set_xlabel(SWEEP_LABELS.get(x, x))
        axis.set_ylabel(metric_label(detail.metric))
        ticks = sorted(panel[x].unique())
        if x == "eps" and len(ticks) <= 8:  # as papers write budgets: 8/255, not 0.0314
            labels = [format_condition(float(t), "eps") for t in ticks]
            tilted = len(ticks) > 4 or max(map(len, labels)) > 4
            axis.set_xticks(ticks, labels, rotation=40 if tilted else 0,
                            ha="right" if tilted else "center")
        axis.grid(alpha=0.3)
    legend_right(figure, axes)
    return [save(figure, f"{detail.task}: {metric_label(detail.metric)} vs {x}", path, vector)]
