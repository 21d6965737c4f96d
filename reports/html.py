"""`rubench report`: leaderboard, per-task detail tables and plots, and one self-contained HTML."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports.details import Detail, details, flat, markdown_table, plot, sanity_flags, to_markdown
from reports.errors import ReportError
from reports.figures import SPECIAL, ood_histograms, reliability_diagrams
from reports.files import write_atomic, write_text_atomic
from reports.leaderboard import (
    Significance,
    Table,
    leaderboard,
    notes,
    provenance,
    write_leaderboard_files,
)
from reports.leaderboard import to_markdown as leaderboard_markdown
from reports.page import (
    FAMILIES,
    OTHER,
    Anchors,
    Item,
    Section,
    checkpoint_table,
    code_spans,
    corruption_grids_html,
    family_of,
    has_corruption_grid,
    heading,
    markdown_table_html,
    render,
    table_box,
)
from reports.pool import Job, run_jobs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _figures(detail: Detail, results: pd.DataFrame, stem: Path, vector: str | None
             ) -> list[Path]:
    """The figures of one detail: its special figure where it has one, else a sweep plot."""
    special = SPECIAL.get((detail.task_type, detail.metric))
    if special is not None:
        return special(results[results["task"] == detail.task], stem.with_suffix(".png"),
                       vector)
    return plot(detail, stem.with_suffix(".png"), vector)


def _cost(job: Job) -> int:
    """A figure job's size for scheduling: the rows it draws."""
    return sum(len(arg) for arg in job[1] if isinstance(arg, pd.DataFrame))


MAX_FIGURE_CHECKPOINTS = 12  # more lines or panels than this make figures nobody can read


def figure_checkpoints(results: pd.DataFrame, baseline: str | None = None,
                       limit: int = MAX_FIGURE_CHECKPOINTS) -> list[str]:
    """The checkpoints the figures show: all up to `limit`; beyond, the baseline and the others
    with the lowest clean top-1 error (then by name), so a report of a thousand checkpoints stays
    a few megabytes with readable figures."""
    names = sorted(results["checkpoint"].unique())
    if len(names) <= limit:
        return names
    clean = results[(results["metric"] == "top1_err") & (results["task"] == "clean")]
    error = clean.groupby("checkpoint")["value"].min()
    ranked = sorted(names, key=lambda name: (name != baseline, error.get(name, float("inf")),
                                             name))
    return sorted(ranked[:limit])


def _artifacts(out_dir: Path) -> pd.DataFrame:
    """The binned descriptive rows (score histograms, reliability bins) the figures draw:
    `artifacts.csv`, or such rows still in an older `results.csv`."""
    path = Path(out_dir) / "artifacts.csv"
    if path.is_file():
        return pd.read_csv(path, low_memory=False)
    results = pd.read_csv(Path(out_dir) / "results.csv", low_memory=False)
    return results[results["metric"].str.startswith(("score_hist", "reliability_"))]


def _headline(markdown: str, notes_: list[str], source: str, figure_note: str) -> Section:
    """The leaderboard section: the table in its scrolling box, its notes and provenance."""
    body = [table_box(markdown_table_html(markdown)),
            *(f"<p class=note>{code_spans(note)}</p>" for note in notes_),
            f"<p class=note>{code_spans(source)}</p>"]
    if figure_note:
        body.append(f"<p class=note>{figure_note}</p>")
    return Section("leaderboard", "Leaderboard", body)


def _write_sanity_flags(results: pd.DataFrame, folder: Path, source: str
                        ) -> tuple[list[Path], Section | None]:
    """Write sanity_flags.md/.csv; their section of the page (none where no attack checked)."""
    flags = sanity_flags(results)
    if flags.empty:
        return [], None
    raised = flags[flags["raised"] == 1]
    summary = (f"{len(flags)} sanity checks of the attacks, {len(raised)} raised"
               + (":" if len(raised) else "."))
    stem = folder / "sanity_flags"
    write_atomic(stem.with_suffix(".csv"), lambda path: flags.to_csv(path, index=False))
    listing = markdown_table(raised, index=False) if len(raised) else ""
    write_text_atomic(stem.with_suffix(".md"), f"### Sanity flags\n\n{summary}\n\n"
                                               f"{listing}\n\n{source}\n")
    body = [f"<p>{html.escape(summary)}</p>"]
    if len(raised):
        body.append(table_box(markdown_table_html(listing)))
    return [stem.with_suffix(".md"), stem.with_suffix(".csv")], Section(
        "sanity-flags", "Sanity flags", body)


def _insert_after_task(items: list[Item], item: Item) -> None:
    """Put `item` right after the last item of its task (its figures beside its tables)."""
    same = [i for i, other in enumerate(items) if other.task == item.task]
    items.insert(same[-1] + 1 if same else len(items), item)


@dataclass
class _Figures:
    """Figure jobs and the page item each one's images go to, drawn together on every core."""

    jobs: list[Job] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    def add(self, job: Job, item: Item) -> None:
        """Draw `job` later, its images on `item`."""
        self.jobs.append(job)
        self.items.append(item)

    def draw(self) -> list[Path]:
        """Draw every job (longest first), put its images on its item; the images, in order."""
        order = sorted(range(len(self.jobs)), key=lambda i: -_cost(self.jobs[i]))
        drawn = dict(zip(order, run_jobs([self.jobs[i] for i in order]), strict=True))
        written = []
        for i, item in enumerate(self.items):
            item.images += drawn[i]
            written += drawn[i]
        return written


def _binned_items(binned: pd.DataFrame, folder: Path, anchors: Anchors,
                  families: dict[str, list[Item]], figures: _Figures, vector: str | None
                  ) -> None:
    """An item per task with reliability or score-histogram rows, beside the task's tables,
    and the jobs that draw its figures (one per OOD scorer)."""
    drawn = (("reliability_", "reliability diagrams", reliability_diagrams),
             ("score_hist", "score histograms", ood_histograms))
    for prefix, title, draw in drawn:
        for task, rows in binned[binned["metric"].str.startswith(prefix)].groupby(
                "task", sort=False):
            slug = prefix.rstrip("_")
            item = Item(anchors(f"{task}__{slug}"), f"{task} / {title}", task)
            task_type = rows["task_type"].iloc[0] if "task_type" in rows else task
            _insert_after_task(families.setdefault(family_of(task_type), []), item)
            parts = rows.groupby("scorer", sort=True) if prefix == "score_hist" \
                else [(None, rows)]
            for _, part in parts:
                figures.add((draw, (part, folder / _slug(f"{task}__{slug}.png"), vector)),
                            item)


def _checkpoints(table: Table, grids: dict[str, list[str]], anchors: Anchors) -> Section:
    """One item per checkpoint: its headline numbers, and links to its corruption grids."""
    items = []
    for name in table.values.index:
        links = " ".join(f'<a href="#{anchor}">corruption x severity grid</a>'
                         for anchor in grids.get(name, []))
        items.append(Item(anchors(f"checkpoint-{name}"), str(name), table=checkpoint_table(
            table, name), after=f"<p class=note>{links}</p>" if links else ""))
    return Section("checkpoints", "Checkpoints", items=items)


def _family_sections(families: dict[str, list[Item]]) -> list[Section]:
    """The family sections with any items, in page order (unknown task types last)."""
    return [Section(f"family-{key}", title, items=families[key])
            for key, title, *_ in (*FAMILIES, OTHER) if families.get(key)]


def _page_anchors() -> Anchors:
    """Anchors with the ids of the fixed sections already taken."""
    anchors = Anchors()
    for fixed in ("leaderboard", "contents", "sanity-flags", "checkpoints",
                  *(f"family-{key}" for key, *_ in (*FAMILIES, OTHER))):
        anchors(fixed)
    return anchors


def write_report(out_dir: Path, baseline: str | None = None, show_ci: bool = False,
                 significance: Significance | None = None,
                 columns: str | Sequence[str] | None = None, vector: str | None = None
                 ) -> list[Path]:
    """Write leaderboard.md/.csv (the headline `columns`, see `select_columns`),
    report/<task>__<metric>.{md,csv,png} (and each figure as `vector`, "svg" or "pdf", when
    asked), the sanity-flag table and report/index.html (every table and figure, images
    inlined, sections by task family)."""
    out_dir = Path(out_dir)
    path = out_dir / "results.csv"
    if not path.is_file():
        raise ReportError(f"{path}: no results.csv; run `rubench evaluate` first")
    results = pd.read_csv(path, low_memory=False)
    if results.empty:
        raise ReportError(f"{path}: holds no results")
    table = leaderboard(results, columns)
    written = list(write_leaderboard_files(out_dir, results, table, baseline, show_ci,
                                           significance))
    folder = out_dir / "report"
    folder.mkdir(exist_ok=True)
    source = provenance(results)
    anchors = _page_anchors()
    flag_files, flags_section = _write_sanity_flags(results, folder, source)
    written += flag_files
    shown = figure_checkpoints(results, baseline)
    plotted = results[results["checkpoint"].isin(shown)]
    figure_note = ""
    if len(shown) < results["checkpoint"].nunique():
        figure_note = (f"Figures show {len(shown)} of {results['checkpoint'].nunique()} "
                       "checkpoints (" + html.escape(", ".join(shown))
                       + "); the tables list every one.")
    tables = details(results)
    figured = tables if len(plotted) == len(results) else details(plotted)  # all shown: reuse
    for_figures = {(d.task, d.metric): d for d in figured}
    figures = _Figures()
    families: dict[str, list[Item]] = {}
    grids: dict[str, list[str]] = {}  # checkpoint -> anchors of its corruption grids
    for detail in tables:
        stem = folder / _slug(f"{detail.task}__{detail.metric}")
        markdown = to_markdown(detail)
        write_text_atomic(stem.with_suffix(".md"), markdown + "\n" + source + "\n")
        write_atomic(stem.with_suffix(".csv"), flat(detail).to_csv)
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
        item = Item(anchors(f"{detail.task}__{detail.metric}"), heading(detail), detail.task,
                    markdown_table_html(markdown.split("\n", 2)[2]))
        if has_corruption_grid(detail):
            item.after, where = corruption_grids_html(detail, anchors)
            for name, anchor in where.items():
                grids.setdefault(name, []).append(anchor)
        families.setdefault(family_of(detail.task_type), []).append(item)
        subset = for_figures.get((detail.task, detail.metric))
        if subset is not None:
            figures.add((_figures, (subset, plotted[plotted["task"] == detail.task], stem,
                                    vector)), item)
    binned = _artifacts(out_dir)
    _binned_items(binned[binned["checkpoint"].isin(shown)], folder, anchors, families, figures,
                  vector)
    written += figures.draw()
    sections = _family_sections(families)
    if flags_section is not None:
        sections.append(flags_section)
    sections.append(_checkpoints(table, grids, anchors))
    headline = _headline(leaderboard_markdown(table, baseline, show_ci=show_ci,
                                              significance=significance),
                         notes(table, baseline, show_ci, significance is not None), source,
                         figure_note)
    index = folder / "index.html"
    write_text_atomic(index, render(headline, sections, source))
    written.append(index)
    return written
