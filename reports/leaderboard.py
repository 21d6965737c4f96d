"""Leaderboard: one row per checkpoint, one column per summary metric, from `results.csv`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ARROWS = {True: "↑", False: "↓"}


def condition_columns(results: pd.DataFrame) -> list[str]:
    """The condition columns of results.csv: those between `metric` and `value`."""
    columns = list(results.columns)
    return columns[columns.index("metric") + 1: columns.index("value")]


def leaderboard(results: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, bool]]:
    """Pivot the unconditioned metrics into checkpoint rows and 'task/metric' columns.

    Returns the table and, per column, whether higher is better.
    """
    conditions = condition_columns(results)
    summary = results[results[conditions].isna().all(axis=1)] if conditions else results
    summary = summary.assign(column=summary["task"] + "/" + summary["metric"])
    order = list(dict.fromkeys(summary["column"]))
    directions = dict(zip(summary["column"], summary["higher_is_better"].astype(bool),
                          strict=True))
    table = summary.pivot(index="checkpoint", columns="column", values="value")
    return table[order].sort_index(), directions


def to_markdown(table: pd.DataFrame, directions: dict[str, bool], digits: int = 2) -> str:
    """A GitHub-flavoured Markdown table with a direction arrow per column."""
    header = ["checkpoint", *(f"{c} {ARROWS[directions[c]]}" for c in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in row]
        lines.append("| " + " | ".join([str(name), *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_leaderboard(out_dir: Path) -> tuple[Path, Path]:
    """Read `out_dir/results.csv`; write `leaderboard.md` and `leaderboard.csv` beside it."""
    out_dir = Path(out_dir)
    source = out_dir / "results.csv"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no results.csv; run `rubench evaluate` first")
    results = pd.read_csv(source)
    table, directions = leaderboard(results)
    note = ""
    if not results.empty:
        first = results.iloc[0]
        note = (f"\nSuite `{first['suite']}` v{first['suite_version']}, seed {first['seed']}, "
                f"{first['n_data']} images of {first['dataset']} ({first['split']}). "
                "Rates in percent; ↓ lower is better, ↑ higher is better.\n")
    markdown = out_dir / "leaderboard.md"
    markdown.write_text("# Leaderboard\n\n" + to_markdown(table, directions) + note)
    csv = out_dir / "leaderboard.csv"
    table.to_csv(csv)
    return markdown, csv
