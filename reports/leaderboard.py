"""Leaderboard: one row per checkpoint, the seed papers' headline columns, from `results.csv`.

Each headline column picks one metric of one task type under fixed conditions (e.g. the OOD
average over sets with the MSP scorer); a condition that still varies within the results
(e.g. several FGSM eps) splits it into one column per value. Columns with no data are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.records import condition_key
from reports.errors import ReportError
from reports.files import write_atomic, write_text_atomic

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
    Column("Robust err", "worst_case", "top1_err", error=False),
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
# Sanity flags of the attack tasks (rows `flag_*` = 1), shown beside the numbers they concern.
FLAG_MEANINGS = {
    "flag_below_clean": "the adversarial error is below the clean error",
    "flag_below_fgsm": "the error is below the one-step attack's at the same eps (a weak attack)",
    "flag_not_monotone": "the error drops somewhere as eps grows",
    "flag_zero_grad": "some correctly classified inputs have an exactly-zero gradient "
                      "(gradient masking)",
    "flag_randomized": "two forward passes on the same input differ (a randomized model)",
    "flag_softmax_output": "the model outputs probabilities, not logits",
}
FLAG_MARK = "⚠"
AVERAGE_NOTE = ("Average: the mean of the error columns (clean, adversarial, occlusion, "
                "corruption-category and affine errors, in percent) present for a checkpoint, "
                "as in Chun et al.'s ImageNet table; the robust errors (per image, the worst "
                "case over the attacks named at that budget), the mean corruption error and mCE "
                "(already summaries), OOD and calibration columns are not in it.")


def condition_columns(results: pd.DataFrame) -> list[str]:
    """The condition columns of results.csv: those between `metric` and `value`."""
    columns = list(results.columns)
    return columns[columns.index("metric") + 1: columns.index("value")]


def _task_type(results: pd.DataFrame) -> pd.Series:
    return results["task_type"] if "task_type" in results else results["task"]


GENERATED = "generated"


def _generated(rows: pd.DataFrame) -> bool:
    """Whether any row comes from a data set rubench generated (condition source=generated)."""
    return "source" in rows and bool((rows["source"] == GENERATED).any())


def format_condition(value: object, name: str = "") -> str:
    """A condition value as papers write it: 8 not 8.0; an `eps` of k/255 with a long decimal
    as "k/255" (8/255, not 0.0313725; 0.2 stays 0.2); other floats in %g."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        text, levels = f"{value:g}", value * 255
        significant = len(text.split("e")[0].replace(".", "").lstrip("0"))
        if name == "eps" and 0 < value < 1 and significant > 4 \
                and abs(levels - round(levels)) < 1e-6:
            return f"{round(levels)}/255"
        return text
    return str(value)


@dataclass(frozen=True)
class Table:
    """Leaderboard values plus, per column, direction and whether it enters the Average."""

    values: pd.DataFrame
    ci_low: pd.DataFrame
    ci_high: pd.DataFrame
    higher_is_better: dict[str, bool | None]
    in_average: list[str]
    flags: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (ckpt, column)
    # (ckpt, column) -> the row it shows: (checkpoint, task, metric, condition key)
    sources: dict[tuple[str, str], tuple[str, str, str, str]] = field(default_factory=dict)


RowKey = tuple[str, str, str, str]
# (row of a checkpoint, the same column's row of the baseline) -> is the difference beyond
# noise under a paired test on the same images? None where no paired test applies.
Significance = Callable[[RowKey, RowKey], bool | None]


def _raised_flags(flags: dict[tuple[str, str], pd.DataFrame], row: pd.Series,
                  conditions: list[str]) -> list[str]:
    """Names of the sanity flags raised (`flags` by checkpoint and task) for the task and
    checkpoint of `row` that concern its conditions: a flag without eps concerns every eps,
    one with eps only that eps."""
    mine = flags.get((row["checkpoint"], row["task"]))
    if mine is None:
        return []
    for column in conditions:
        if pd.isna(row[column]):
            mine = mine[mine[column].isna()]
        else:
            mine = mine[mine[column].isna() | (mine[column] == row[column])]
    return sorted(mine["metric"].unique())


OOD_NOT_SETS = ("mean", "in_distribution")  # `ood_set` values that are not OOD sets


def _descriptor(column: Column, group: pd.DataFrame, results: pd.DataFrame) -> str:
    """What a headline column's fixed conditions mean, for its header: an OOD mean says its
    scorer and over how many sets (`MSP, mean over 7 sets`), ECE its scaling."""
    if column.where.get("ood_set") == "mean":
        scorer = str(column.where.get("scorer", "?"))
        if not {"ood_set", "scorer"} <= set(results):
            return f"{scorer.upper()}, mean over sets"  # no per-set rows to count
        sets = results[results["task"].isin(group["task"].unique())
                       & (results["metric"] == column.metric)
                       & (results["scorer"] == scorer)]["ood_set"]
        count = len(set(sets.dropna()) - set(OOD_NOT_SETS))
        if not count:  # only the mean rows were kept
            return f"{scorer.upper()}, mean over sets"
        return f"{scorer.upper()}, mean over {count} set{'s' if count != 1 else ''}"
    if column.task == "worst_case" and "attacks" in group:
        return "worst case over: " + "; ".join(sorted(group["attacks"].dropna().unique()))
    if "scaling" in column.where:
        scaling = column.where["scaling"]
        return "no scaling" if scaling == "none" else f"{scaling} scaling"
    return ""


def leaderboard(results: pd.DataFrame, columns: tuple[Column, ...] = HEADLINE) -> Table:
    """Headline table: index = checkpoint, one column per headline (split) column, plus Average."""
    conditions = condition_columns(results)
    task_type = _task_type(results)
    checkpoints = sorted(results["checkpoint"].unique())
    raised_rows = results[results["metric"].str.startswith("flag_") & (results["value"] > 0)]
    flags = {key: group for key, group in raised_rows.groupby(["checkpoint", "task"])}
    values, lows, highs, directions, averaged, raised, sources = {}, {}, {}, {}, [], {}, {}
    for column in columns:
        rows = results[(task_type == column.task) & (results["metric"] == column.metric)]
        for key, wanted in column.where.items():
            if key in rows:  # a condition the results do not have at all constrains nothing
                rows = rows[rows[key] == wanted]
        if rows.empty:
            continue
        split = [c for c in conditions if c not in column.where and rows[c].nunique() > 1]
        if rows.duplicated([*split, "checkpoint"]).any():  # same conditions, several tasks
            split = ["task", *split]
        groups = rows.groupby(split, dropna=False, sort=True) if split else [((), rows)]
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            suffix = ", ".join(f"{c}={format_condition(v, c)}" for c, v in zip(split, key,
                                                                               strict=True)
                               if not pd.isna(v) and c != "attacks")  # in the descriptor
            if "source" not in split and _generated(group):
                suffix = ", ".join(filter(None, [suffix, GENERATED]))
            said = "; ".join(filter(None, [_descriptor(column, group, results), suffix]))
            header = f"{column.header} ({said})" if said else column.header
            indexed = group.set_index("checkpoint")
            values[header] = indexed["value"]
            lows[header] = indexed.get("ci_low", pd.Series(np.nan, index=indexed.index))
            highs[header] = indexed.get("ci_high", pd.Series(np.nan, index=indexed.index))
            directions[header] = direction(group["higher_is_better"].iloc[0])
            if column.error:
                averaged.append(header)
            for _, row in group.iterrows():
                names = _raised_flags(flags, row, conditions)
                if names:
                    raised[(row["checkpoint"], header)] = names
                sources[(row["checkpoint"], header)] = (
                    row["checkpoint"], row["task"], row["metric"],
                    condition_key({c: row[c] for c in conditions}))
    frame = pd.DataFrame(values, index=checkpoints)
    if len(averaged) > 1:
        frame["Average"] = frame[averaged].mean(axis=1)
        directions["Average"] = False
    frame.index.name = "checkpoint"
    return Table(frame, pd.DataFrame(lows, index=checkpoints),
                 pd.DataFrame(highs, index=checkpoints), directions, averaged, raised, sources)


SUMMARY_PREFIXES = ("Clean err", "Corruption err", "OOD AUROC", "ECE", "Average")


def summary(table: Table) -> str:
    """A terminal-width digest of the leaderboard: clean error, the mean corruption error,
    OOD AUROC, ECE and the Average (the full table is in leaderboard.md / .csv)."""
    picked = [c for prefix in SUMMARY_PREFIXES for c in table.values.columns
              if c.startswith(prefix)]
    frame = table.values[picked].rename(columns=lambda c: c + (" ↑" if table.higher_is_better
                                                               .get(c) else " ↓"))
    return frame.to_string(float_format=lambda v: f"{v:.2f}")


SIGNIFICANT = "*"


def to_markdown(table: Table, baseline: str | None = None, digits: int = 2,
                show_ci: bool = False, significance: Significance | None = None) -> str:
    """Markdown: arrow per column, best value per column in bold, deltas vs `baseline` row,
    marked SIGNIFICANT where a paired test on the same images puts them beyond noise."""
    frame = table.values
    if baseline is not None and baseline not in frame.index:
        raise ReportError(f"--baseline {baseline!r} is not a checkpoint of these results "
                         f"({', '.join(frame.index)})")
    header = ["checkpoint", *(f"{c} {ARROWS[table.higher_is_better[c]]}".rstrip()
                              for c in frame)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(frame.columns)]
    best = {c: (frame[c].max() if table.higher_is_better[c] else frame[c].min())
            for c in frame if table.higher_is_better[c] is not None}
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
                mark = ""
                pair = (table.sources.get((name, column)), table.sources.get((baseline, column)))
                if significance is not None and None not in pair and significance(*pair):
                    mark = SIGNIFICANT
                text += f" ({value - frame.at[baseline, column]:+.{digits}f}{mark})"
            if value == best.get(column) and frame[column].notna().sum() > 1:
                text = f"**{text}**"
            if (name, column) in table.flags:
                text += f" {FLAG_MARK}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def flag_notes(table: Table) -> list[str]:
    """One line per raised sanity flag: where, which flag, what it means."""
    return [f"{FLAG_MARK} `{checkpoint}`, {column}: `{name}`: {FLAG_MEANINGS.get(name, name)}."
            for (checkpoint, column), names in sorted(table.flags.items()) for name in names]


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
    if "normalization" in results and results["normalization"].notna().any():
        line += f" Normalization: {distinct('normalization')}."
    if _generated(results):
        line += (" Columns and rows marked generated (source=generated) use a corrupted copy "
                 "rubench generated itself, an approximation of the released set: compare them "
                 "with each other, not with published numbers.")
    return line


def notes(table: Table, baseline: str | None, show_ci: bool, paired: bool = False
          ) -> list[str]:
    """The paragraphs under the leaderboard: how to read it, then any raised sanity flags."""
    legend = ["Rates in percent; ↓ lower is better, ↑ higher is better; best per column in "
              "bold."]
    if show_ci:
        legend.append("± half the width of the 95 % interval (Wilson for rates, bootstrap for "
                      "means over images and OOD metrics).")
    if baseline:
        legend.append(f"In parentheses: difference to `{baseline}`"
                      + (f"; {SIGNIFICANT}: beyond noise under a paired test on the same images "
                         "(exact McNemar for error rates, paired bootstrap for NLL and per-set "
                         "OOD metrics; two-sided, 5 % level); unmarked: within noise, or no "
                         "paired test applies (worst cases, means over cells, calibration "
                         "errors, the mean over OOD sets)." if paired else "."))
    if "Average" in table.values:
        legend.append(AVERAGE_NOTE)
    flagged = flag_notes(table)
    if flagged:
        legend.append(f"{FLAG_MARK}: a sanity flag of the attack was raised; the number may "
                      "overstate robustness.")
    return [" ".join(legend), *flagged]


def write_leaderboard(out_dir: Path, baseline: str | None = None, show_ci: bool = False,
                      significance: Significance | None = None) -> tuple[Path, Path]:
    """Read `out_dir/results.csv`; write `leaderboard.md` and `leaderboard.csv` (values and
    interval bounds to six significant digits) beside it."""
    out_dir = Path(out_dir)
    source = out_dir / "results.csv"
    if not source.is_file():
        raise ReportError(f"{source}: no results.csv; run `rubench evaluate` first")
    results = pd.read_csv(source, low_memory=False)
    return write_leaderboard_files(out_dir, results, leaderboard(results), baseline, show_ci,
                                   significance)


def write_leaderboard_files(out_dir: Path, results: pd.DataFrame, table: Table,
                            baseline: str | None = None, show_ci: bool = False,
                            significance: Significance | None = None) -> tuple[Path, Path]:
    """Write `leaderboard.md` and `leaderboard.csv` of `table` (`leaderboard(results)`)."""
    markdown = out_dir / "leaderboard.md"
    write_text_atomic(markdown, "# Leaderboard\n\n"
                      + to_markdown(table, baseline, show_ci=show_ci, significance=significance)
                      + "\n" + "\n\n".join(notes(table, baseline, show_ci,
                                                   significance is not None)) + "\n\n"
                      + provenance(results) + "\n")
    csv = out_dir / "leaderboard.csv"
    combined = table.values.copy()
    for column in table.ci_low:
        combined[f"{column} ci_low"] = table.ci_low[column]
        combined[f"{column} ci_high"] = table.ci_high[column]
        flagged = {ckpt: ";".join(names) for (ckpt, col), names in table.flags.items()
                   if col == column}
        if flagged:
            combined[f"{column} flags"] = pd.Series(flagged)
    # six significant digits: far below any interval's width (results.csv keeps full precision)
    write_atomic(csv, lambda path: combined.to_csv(path, float_format="%.6g"))
    return markdown, csv
