"""Leaderboard: one row per checkpoint, the seed papers' headline columns, from `results.csv`.

Each headline column picks one metric of one task type under fixed conditions (e.g. the OOD
average over sets with the MSP scorer); a condition that still varies within the results
(e.g. several FGSM eps) splits it into one column per value. Columns with no data are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reports.errors import ReportError

ARROWS = {True: "↑", False: "↓", None: ""}


def direction(value: object) -> bool | None:
    """A `higher_is_better` cell of results.csv: True, False, or None (no direction)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return bool(value)


@dataclass(frozen=True)
class Column:
    """A headline column: `metric` of task type `task`, rows filtered by `where`; `error`
    columns enter the Average."""

    header: str
    task: str
    metric: str
    where: dict[str, object] = field(default_factory=dict)
    error: bool = True


HEADLINE = (
    Column("Clean err", "clean", "top1_err"),
    Column("FGSM err", "fgsm", "top1_err"),
    Column("I-FGSM err", "ifgsm", "top1_err"),
    Column("PGD err", "pgd", "top1_err"),
    Column("Occlusion err", "occlusion", "occlusion_err"),
    Column("Noise err", "corruptions", "category_err", {"category": "noise"}),
    Column("Blur err", "corruptions", "category_err", {"category": "blur"}),
    Column("Weather err", "corruptions", "category_err", {"category": "weather"}),
    Column("Digital err", "corruptions", "category_err", {"category": "digital"}),
    Column("mCE", "corruptions", "mce", error=False),
    Column("Corruption err", "corruptions", "mean_corruption_err", error=False),
    Column("Affine err", "affine", "mean_err"),
    Column("OOD AUROC", "ood", "auroc", {"ood_set": "mean", "scorer": "msp"}, error=False),
    Column("OOD TNR@TPR95", "ood", "tnr_at_tpr95", {"ood_set": "mean", "scorer": "msp"},
           error=False),
    Column("OOD det. acc", "ood", "detection_acc", {"ood_set": "mean", "scorer": "msp"},
           error=False),
    Column("ECE", "calibration", "ece", {"scaling": "none"}, error=False),
)
AVERAGE_NOTE = ("Average: the mean of the error columns (clean, adversarial, occlusion, "
                "corruption-category and affine errors, in percent) present for a checkpoint, "
                "as in Chun et al.'s ImageNet table; the mean corruption error and mCE (already "
                "summaries of the categories), OOD and calibration columns are not in it.")


def condition_columns(results: pd.DataFrame) -> list[str]:
    """The condition columns of results.csv: those between `metric` and `value`."""
    columns = list(results.columns)
    return columns[columns.index("metric") + 1: columns.index("value")]


def _task_type(results: pd.DataFrame) -> pd.Series:
    return results["task_type"] if "task_type" in results else results["task"]


def _format_condition(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Table:
    """Leaderboard values plus, per column, direction and whether it enters the Average."""

    values: pd.DataFrame
    ci_low: pd.DataFrame
    ci_high: pd.DataFrame
    higher_is_better: dict[str, bool | None]
    in_average: list[str]


def leaderboard(results: pd.DataFrame, columns: tuple[Column, ...] = HEADLINE) -> Table:
    """Headline table: index = checkpoint, one column per headline (split) column, plus Average."""
    conditions = condition_columns(results)
    task_type = _task_type(results)
    checkpoints = sorted(results["checkpoint"].unique())
    values, lows, highs, directions, averaged = {}, {}, {}, {}, []
    for column in columns:
        rows = results[(task_type == column.task) & (results["metric"] == column.metric)]
        for key, wanted in column.where.items():
            if key in rows:  # a condition the results do not have at all constrains nothing
                rows = rows[rows[key] == wanted]
        if rows.empty:
            continue
        split = [c for c in conditions if c not in column.where and rows[c].nunique() > 1]
        groups = rows.groupby(split, dropna=False, sort=True) if split else [((), rows)]
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            suffix = ", ".join(f"{c}={_format_condition(v)}" for c, v in zip(split, key,
                                                                               strict=True)
                               if not pd.isna(v))
            header = f"{column.header} ({suffix})" if suffix else column.header
            indexed = group.set_index("checkpoint")
            values[header] = indexed["value"]
            lows[header] = indexed.get("ci_low", pd.Series(np.nan, index=indexed.index))
            highs[header] = indexed.get("ci_high", pd.Series(np.nan, index=indexed.index))
            directions[header] = direction(group["higher_is_better"].iloc[0])
            if column.error:
                averaged.append(header)
    frame = pd.DataFrame(values, index=checkpoints)
    if len(averaged) > 1:
        frame["Average"] = frame[averaged].mean(axis=1)
        directions["Average"] = False
    frame.index.name = "checkpoint"
    return Table(frame, pd.DataFrame(lows, index=checkpoints),
                 pd.DataFrame(highs, index=checkpoints), directions, averaged)


def to_markdown(table: Table, baseline: str | None = None, digits: int = 2,
                show_ci: bool = False) -> str:
    """Markdown: arrow per column, best value per column in bold, deltas vs `baseline` row."""
    frame = table.values
    if baseline is not None and baseline not in frame.index:
        raise ReportError(f"--baseline {baseline!r} is not a checkpoint of these results "
                         f"({', '.join(frame.index)})")
    header = ["checkpoint", *(f"{c} {ARROWS[table.higher_is_better[c]]}" for c in frame)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(frame.columns)]
    best = {c: (frame[c].max() if table.higher_is_better[c] else frame[c].min()) for c in frame}
    for name, row in frame.iterrows():
        cells = [name]
        for column, value in row.items():
            if pd.isna(value):
                cells.append("")
                continue
            text = f"{value:.{digits}f}"
            low, high = table.ci_low.get(column, {}).get(name), table.ci_high.get(column, {}).get(
                name)
            if show_ci and low is not None and not pd.isna(low):
                text += f" ± {(high - low) / 2:.{digits}f}"
            if baseline is not None and name != baseline and not pd.isna(frame.at[baseline,
                                                                                   column]):
                text += f" ({value - frame.at[baseline, column]:+.{digits}f})"
            if value == best[column] and frame[column].notna().sum() > 1:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def provenance(results: pd.DataFrame) -> str:
    """One line of where the numbers come from: suite, versions, seeds, data, device."""
    if results.empty:
        return "No results."

    def distinct(column: str) -> str:
        if column not in results:
            return "?"
        return ", ".join(str(v) for v in sorted(results[column].dropna().astype(str).unique()))

    line = (f"Suite `{distinct('suite')}` v{distinct('suite_version')}; "
            f"data {distinct('dataset')} ({distinct('split')}), {distinct('n_data')} images "
            f"(limit {distinct('limit')}); seed {distinct('seed')}; device {distinct('device')}; "
            f"rubench {distinct('rubench_version')} (git {distinct('git_hash')}), "
            f"torch {distinct('torch_version')}.")
    if "generated" in results and results["generated"].fillna(False).astype(bool).any():
        line += " Rows marked generated use a corrupted copy rubench generated itself, an " \
                "approximation of the released set."
    return line


def write_leaderboard(out_dir: Path, baseline: str | None = None) -> tuple[Path, Path]:
    """Read `out_dir/results.csv`; write `leaderboard.md` and `leaderboard.csv` beside it."""
    out_dir = Path(out_dir)
    source = out_dir / "results.csv"
    if not source.is_file():
        raise ReportError(f"{source}: no results.csv; run `rubench evaluate` first")
    results = pd.read_csv(source)
    table = leaderboard(results)
    notes = ["Rates in percent; ↓ lower is better, ↑ higher is better; best per column in bold."]
    if baseline:
        notes.append(f"In parentheses: difference to `{baseline}`.")
    if "Average" in table.values:
        notes.append(AVERAGE_NOTE)
    markdown = out_dir / "leaderboard.md"
    markdown.write_text("# Leaderboard\n\n" + to_markdown(table, baseline) + "\n"
                        + " ".join(notes) + "\n\n" + provenance(results) + "\n")
    csv = out_dir / "leaderboard.csv"
    combined = table.values.copy()
    for column in table.ci_low:
        combined[f"{column} ci_low"] = table.ci_low[column]
        combined[f"{column} ci_high"] = table.ci_high[column]
    combined.to_csv(csv)
    return markdown, csv
