"""Leaderboard: one row per checkpoint, the seed papers' headline columns, from `results.csv`.

Each headline column picks one metric of one task type under fixed conditions (e.g. the OOD
average over sets with the MSP scorer). By default, as in Chun et al.'s tables, each family has
its columns at one headline budget: every attack at the same eps (`headline_budget`), one task
per column; the full sweeps are in the detail tables. `--columns all` instead splits a column
by every condition that varies within the results (e.g. one FGSM column per eps). The Average
takes one error per family (`_family_errors`). Columns with no data are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    """A headline column: `metric` of task type `task`, rows filtered by `where`, in `family`.
    `budget`: an attack, shown at the headline budget; `error`: its value is the family's error
    in the Average; `default`: shown when no `--columns` are chosen."""

    header: str
    task: str
    metric: str
    family: str
    where: dict[str, object] = field(default_factory=dict)
    budget: bool = False
    error: bool = False
    default: bool = True


# The mean over all OOD sets: not a group's mean (condition `ood_group`) nor a full-spectrum row
# (`spectrum`), the conditions `benchmark.reductions.ood` adds for grouped sets and csid sets.
OOD_MEAN = {"ood_set": "mean", "scorer": "msp", "ood_group": np.nan, "spectrum": np.nan}
HEADLINE = (
    Column("Clean err", "clean", "top1_err", "clean", error=True),
    Column("FGSM err", "fgsm", "top1_err", "adversarial", budget=True),
    Column("I-FGSM err", "ifgsm", "top1_err", "adversarial", budget=True),
    Column("PGD err", "pgd", "top1_err", "adversarial", budget=True),
    Column("AutoAttack err", "autoattack", "top1_err", "adversarial", budget=True),
    Column("Robust err", "worst_case", "top1_err", "adversarial", budget=True, error=True),
    Column("Occlusion err", "occlusion", "occlusion_err", "occlusion", error=True),
    Column("Noise err", "corruptions", "category_err", "corruption", {"category": "noise"}),
    Column("Blur err", "corruptions", "category_err", "corruption", {"category": "blur"}),
    Column("Weather err", "corruptions", "category_err", "corruption", {"category": "weather"}),
    Column("Digital err", "corruptions", "category_err", "corruption", {"category": "digital"}),
    Column("mCE", "corruptions", "mce", "corruption"),
    Column("Corruption err", "corruptions", "mean_corruption_err", "corruption", error=True),
    Column("Affine err", "affine", "mean_err", "affine", error=True),
    Column("Shift err", "shift", "top1_err", "shift"),  # one column per shift set
    Column("Shift gap", "shift", "gap_err", "shift", default=False),
    Column("OOD AUROC", "ood", "auroc", "ood", OOD_MEAN),
    Column("OOD TNR@TPR95", "ood", "tnr_at_tpr95", "ood", OOD_MEAN, default=False),
    Column("OOD det. acc", "ood", "detection_acc", "ood", OOD_MEAN, default=False),
    Column("ECE", "calibration", "ece", "calibration", {"scaling": "none"}),
)
FAMILIES = tuple(dict.fromkeys(column.family for column in HEADLINE))
AVERAGE = "Average"
ALL = "all"  # `--columns all`: every task and condition value its own column
# Sanity flags of the attack tasks (rows `flag_*` = 1), shown beside the numbers they concern.
FLAG_MEANINGS = {
    "flag_below_clean": "the adversarial error is below the clean error",
    "flag_below_fgsm": "the error is below the one-step attack's at the same eps (a weak attack)",
    "flag_not_monotone": "the error drops somewhere as eps grows",
    "flag_zero_grad": "some correctly classified inputs have an exactly-zero gradient "
                      "(gradient masking)",
    "flag_randomized": "two forward passes on the same input differ (a randomized model)",
    "flag_softmax_output": "the model outputs probabilities, not logits",
    "flag_dynamic": "the forward pass computes gradients (a dynamic defense: AutoAttack's "
                    "standard version may not suffice)",
    "flag_square": "black-box Square lowered the robust accuracy by more than 0.2 points "
                   "below the gradient attacks' (their gradients are likely masked)",
}
FLAG_MARK = "⚠"


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
class Selection:
    """The columns `--columns` chose, in order; whether the Average is shown; `split`: every task
    and condition value its own column (`all`), else attacks at the headline budget."""

    columns: tuple[Column, ...]
    average: bool = True
    split: bool = False


def known_columns() -> list[str]:
    """Every name `--columns` accepts: the headline columns, the families, Average and all."""
    return [*(column.header for column in HEADLINE), *FAMILIES, AVERAGE, ALL]


def select_columns(spec: str | Sequence[str] | None = None) -> Selection:
    """`--columns` (comma-separated, case-insensitive) as a Selection: None -> the default
    headline; `all` -> every column split as the results vary; else the named columns and
    families (a family: all its columns), in the order given."""
    if spec is None:
        return Selection(tuple(column for column in HEADLINE if column.default))
    names = [name.strip() for name in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [name for name in names if name]
    if [name.lower() for name in names] == [ALL]:
        return Selection(HEADLINE, split=True)
    groups = {column.header.lower(): [column.header] for column in HEADLINE}
    groups |= {family: [c.header for c in HEADLINE if c.family == family] for family in FAMILIES}
    groups[AVERAGE.lower()] = []
    unknown = [name for name in names if name.lower() not in groups]
    if not unknown and names:
        chosen = dict.fromkeys(header for name in names for header in groups[name.lower()])
        by_header = {column.header: column for column in HEADLINE}
        return Selection(tuple(by_header[header] for header in chosen),
                         AVERAGE.lower() in (name.lower() for name in names))
    if ALL in (name.lower() for name in unknown):
        said = f"{ALL!r} stands alone"
    else:
        said = f"unknown column(s) {', '.join(map(repr, unknown))}" if unknown else "no column"
    raise ReportError(f"--columns: {said}; known: {', '.join(known_columns())}")


@dataclass(frozen=True)
class Table:
    """Leaderboard values plus, per column, direction and whether it enters the Average;
    `legend`: what the Average and the attack budget of this table are, for its notes."""

    values: pd.DataFrame
    ci_low: pd.DataFrame
    ci_high: pd.DataFrame
    higher_is_better: dict[str, bool | None]
    in_average: list[str]
    flags: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (ckpt, column)
    # (ckpt, column) -> the row it shows: (checkpoint, task, metric, condition key)
    sources: dict[tuple[str, str], tuple[str, str, str, str]] = field(default_factory=dict)
    legend: list[str] = field(default_factory=list)


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
    scorer and over how many sets (`MSP, mean over 7 sets`), ECE its scaling, AutoAttack a
    custom ensemble (`not the standard version: apgd-ce+apgd-t`)."""
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
    if column.task == "autoattack" and "ensemble" in group:  # only `standard` is RobustBench's
        ensembles = sorted(set(group["ensemble"].dropna()) - {"standard"})
        return "; ".join(f"not the standard version: {e}" for e in ensembles)
    if "scaling" in column.where:
        scaling = column.where["scaling"]
        return "no scaling" if scaling == "none" else f"{scaling} scaling"
    return ""


ATTACKS = tuple(column.task for column in HEADLINE if column.budget and not column.error)
BUDGET = ("space", "norm", "eps")  # the conditions of an attack budget


def headline_budget(results: pd.DataFrame) -> dict[str, object]:
    """The one budget the headline shows every attack at, so that its columns compare: the eps
    that most of FGSM, I-FGSM and PGD ran at (the smaller on a tie), Linf in pixel space where
    any ran so: 8/255 on the cifar10 suite, 4/255 on imagenet's, 1/16 on digits'. {}: no eps."""
    keys = [key for key in BUDGET if key in results]
    if "eps" not in keys:
        return {}
    rows = results[_task_type(results).isin(ATTACKS) & (results["metric"] == "top1_err")
                   & results["eps"].notna()]
    if rows.empty:
        return {}
    budgets = [(dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)), count)
               for key, count in rows.groupby(keys, dropna=False)["task"].nunique().items()]
    best, _ = min(budgets, key=lambda item: (item[0].get("space", "pixel") != "pixel",
                                            item[0].get("norm", "linf") != "linf",
                                            -item[1], item[0]["eps"]))
    return best


def _budget_label(budget: dict[str, object]) -> str:
    """A budget for a header: its eps, and its norm and space where not Linf in pixel space."""
    said = [f"eps={format_condition(budget['eps'], 'eps')}"] if "eps" in budget else []
    said += [f"{key}={budget[key]}" for key, usual in (("norm", "linf"), ("space", "pixel"))
             if not pd.isna(budget.get(key, usual)) and budget.get(key, usual) != usual]
    return ", ".join(said)


def _matching(rows: pd.DataFrame, where: dict[str, object]) -> pd.DataFrame:
    """The rows that meet `where`: a condition the results lack constrains nothing; NaN asks for
    an empty cell."""
    for key, wanted in where.items():
        if key in rows:
            rows = rows[rows[key].isna() if pd.isna(wanted) else rows[key] == wanted]
    return rows


def _one_task(rows: pd.DataFrame, task_type: str, conditions: list[str]
              ) -> tuple[pd.DataFrame, str]:
    """The rows of one task where several of a type measure a column (occlusion filled black
    and with the mean): the suite's task named after the type, else the first by name; with
    the conditions that set it apart from the others, for the header ("fill=black")."""
    tasks = sorted(rows["task"].unique())
    kept = rows[rows["task"] == (task_type if task_type in tasks else tasks[0])]
    apart = [c for c in conditions if rows[c].nunique() > 1 and kept[c].nunique() == 1]
    return kept, ", ".join(f"{c}={format_condition(kept[c].iloc[0], c)}" for c in apart)


@dataclass
class _Parts:
    """Columns as they are built, by header; `headers`: what each headline column became."""

    values: dict[str, pd.Series] = field(default_factory=dict)
    lows: dict[str, pd.Series] = field(default_factory=dict)
    highs: dict[str, pd.Series] = field(default_factory=dict)
    directions: dict[str, bool | None] = field(default_factory=dict)
    flags: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    sources: dict[tuple[str, str], RowKey] = field(default_factory=dict)
    headers: dict[str, list[str]] = field(default_factory=dict)


def _frame(series: dict[str, pd.Series], headers: list[str], checkpoints: list[str]
           ) -> pd.DataFrame:
    """These columns of `series` (values or bounds by header), one row per checkpoint."""
    return pd.DataFrame({h: series[h] for h in headers}, index=checkpoints, dtype=float)


def _build(results: pd.DataFrame, columns: tuple[Column, ...],
           budget: dict[str, object] | None) -> _Parts:
    """Each column's values: attacks at `budget` and one task per column, or with `budget`
    None every task and condition value that varies split into its own column."""
    conditions = condition_columns(results)
    task_type = _task_type(results)
    raised_rows = results[results["metric"].str.startswith("flag_") & (results["value"] > 0)]
    flags = {key: group for key, group in raised_rows.groupby(["checkpoint", "task"])}
    parts = _Parts()
    for column in columns:
        fixed = {**column.where, **(budget if budget and column.budget else {})}
        rows = _matching(results[(task_type == column.task)
                                 & (results["metric"] == column.metric)], fixed)
        if rows.empty:
            continue
        label = _budget_label(budget) if budget and column.budget else ""
        if budget is not None:
            rows, kept = _one_task(rows, column.task, [c for c in conditions if c not in fixed])
            label = ", ".join(filter(None, [label, kept]))
        split = [c for c in conditions if c not in fixed and rows[c].nunique() > 1]
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
            said = "; ".join(filter(None, [_descriptor(column, group, results), label, suffix]))
            header = f"{column.header} ({said})" if said else column.header
            parts.headers.setdefault(column.header, []).append(header)
            indexed = group.set_index("checkpoint")
            parts.values[header] = indexed["value"]
            parts.lows[header] = indexed.get("ci_low", pd.Series(np.nan, index=indexed.index))
            parts.highs[header] = indexed.get("ci_high", pd.Series(np.nan, index=indexed.index))
            parts.directions[header] = direction(group["higher_is_better"].iloc[0])
            for _, row in group.iterrows():
                names = _raised_flags(flags, row, conditions)
                if names:
                    parts.flags[(row["checkpoint"], header)] = names
                parts.sources[(row["checkpoint"], header)] = (
                    row["checkpoint"], row["task"], row["metric"],
                    condition_key({c: row[c] for c in conditions}))
    return parts


def _listed(headers: list[str], how: str) -> str:
    """Columns for the notes: one header, or `how` ("mean", "highest") of several."""
    if len(headers) < 2:
        return "".join(headers)
    return f"the {how} of " + ", ".join(headers)


def _family_errors(parts: _Parts, checkpoints: list[str], names: dict[str, str]
                   ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One error per family and checkpoint (percent, lower is better) from the headline
    `parts`: the family's error column (the mean where it split), where missing its highest
    attack error at the budget; with the headers used and what each family's error is, both
    as the shown table names those columns (`names`)."""
    errors, used, said = {}, [], []
    for family in FAMILIES:
        own = [h for c in HEADLINE if c.family == family and c.error
               for h in parts.headers.get(c.header, [])]
        attacks = [h for c in HEADLINE if c.family == family and c.budget and not c.error
                   for h in parts.headers.get(c.header, [])]
        if not own and not attacks:
            continue
        error = _frame(parts.values, own, checkpoints).mean(axis=1)
        strongest = _frame(parts.values, attacks, checkpoints).max(axis=1)
        fallback = bool((error.isna() & strongest.notna()).any())
        if fallback:
            error = error.fillna(strongest)
        own, attacks = [names.get(h, h) for h in own], [names.get(h, h) for h in attacks]
        text = _listed(own, "mean")
        if fallback:
            text += ("; where it is missing, " if own else "") + _listed(attacks, "highest")
        errors[family], used = error, [*used, *own, *(attacks if fallback else [])]
        said.append(f"{family}: {text}")
    return pd.DataFrame(errors, index=checkpoints), used, said


def _same_columns(headline: _Parts, parts: _Parts) -> dict[str, str]:
    """Headline header -> the header of `parts` that shows the same results rows (`all` names
    the robust error at the budget `..., norm=linf` too)."""
    def rows(built: _Parts) -> dict[str, frozenset[RowKey]]:
        shown: dict[str, set[RowKey]] = {}
        for (_, header), row in built.sources.items():
            shown.setdefault(header, set()).add(row)
        return {header: frozenset(keys) for header, keys in shown.items()}

    by_rows = {keys: header for header, keys in rows(parts).items()}
    return {header: by_rows[keys] for header, keys in rows(headline).items() if keys in by_rows}


def _average_note(said: list[str]) -> str:
    """What the Average is the mean of, family by family."""
    return ("Average: the mean over the families present for a checkpoint of one error each "
            "(in percent), so that no family weighs more for having more columns — "
            + "; ".join(said) + ". Columns not named here are not in it.")


def _budget_note(budget: dict[str, object]) -> str:
    """Which budget the attack columns show, and why that one."""
    norm, space = budget.get("norm", np.nan), budget.get("space", np.nan)
    where = [] if pd.isna(norm) else [{"linf": "Linf"}.get(str(norm), str(norm))]
    where += [] if pd.isna(space) else [f"{space} space"]
    return (f"Attacks at one budget, eps={format_condition(budget['eps'], 'eps')}"
            + (f" ({', '.join(where)})" if where else "") + ": the eps most of FGSM, I-FGSM "
            "and PGD ran at (the smaller on a tie); every eps is in report/<task>__top1_err.md, "
            "and `--columns all` shows them here.")


def leaderboard(results: pd.DataFrame, columns: str | Sequence[str] | None = None) -> Table:
    """Headline table: index = checkpoint, the columns `select_columns(columns)` chooses (by
    default one per family at its headline budget), plus the per-family Average."""
    selection = select_columns(columns)
    checkpoints = sorted(results["checkpoint"].unique())
    budget = headline_budget(results)
    headline = _build(results, HEADLINE, budget)
    parts = _build(results, selection.columns, None) if selection.split else headline
    errors, in_average, said = _family_errors(headline, checkpoints,
                                              _same_columns(headline, parts))
    headers = [h for column in selection.columns for h in parts.headers.get(column.header, [])]
    frame = _frame(parts.values, headers, checkpoints)
    directions = {h: parts.directions[h] for h in headers}
    legend = []
    if budget and not selection.split and any(column.budget and column.header in parts.headers
                                              for column in selection.columns):
        legend.append(_budget_note(budget))
    if selection.average and len(errors.columns) > 1:
        frame[AVERAGE], directions[AVERAGE] = errors.mean(axis=1), False
        legend.append(_average_note(said))
    frame.index.name = "checkpoint"
    shown = set(headers)
    return Table(frame, _frame(parts.lows, headers, checkpoints),
                 _frame(parts.highs, headers, checkpoints), directions,
                 in_average if AVERAGE in frame else [],
                 {key: names for key, names in parts.flags.items() if key[1] in shown},
                 {key: row for key, row in parts.sources.items() if key[1] in shown}, legend)


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
    for column, label in (("preprocessing", "Preprocessing"), ("subset", "Subset")):
        if column in results and results[column].notna().any():
            line += f" {label}: {distinct(column)}."
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
    legend += table.legend
    flagged = flag_notes(table)
    if flagged:
        legend.append(f"{FLAG_MARK}: a sanity flag of the attack was raised; the number may "
                      "overstate robustness.")
    return [" ".join(legend), *flagged]


def write_leaderboard(out_dir: Path, baseline: str | None = None, show_ci: bool = False,
                      significance: Significance | None = None,
                      columns: str | Sequence[str] | None = None) -> tuple[Path, Path]:
    """Read `out_dir/results.csv`; write `leaderboard.md` and `leaderboard.csv` (values and
    interval bounds to six significant digits) of the `columns` chosen beside it."""
    out_dir = Path(out_dir)
    source = out_dir / "results.csv"
    if not source.is_file():
        raise ReportError(f"{source}: no results.csv; run `rubench evaluate` first")
    results = pd.read_csv(source, low_memory=False)
    return write_leaderboard_files(out_dir, results, leaderboard(results, columns), baseline,
                                   show_ci, significance)


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
