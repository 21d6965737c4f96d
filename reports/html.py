"""`rubench report`: leaderboard, per-task detail tables and plots, and one self-contained HTML."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from reports.details import (
    Detail,
    details,
    flat,
    markdown_table,
    plot,
    sanity_flags,
    to_markdown,
)
from reports.errors import ReportError
from reports.figures import SPECIAL, ood_histograms, reliability_diagrams
from reports.files import write_atomic, write_text_atomic
from reports.leaderboard import (
    Significance,
    leaderboard,
    notes,
    provenance,
    write_leaderboard_files,
)
from reports.leaderboard import to_markdown as leaderboard_markdown
from reports.pool import Job, run_jobs

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th:first-child,td:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:13px}"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _markdown_table_to_html(markdown: str) -> str:
    rows = [line.strip().strip("|").split("|") for line in markdown.strip().splitlines()
            if line.startswith("|") and not line.startswith("|---")]
    head, *body = rows

    def cell(text: str, tag: str) -> str:
        text = html.escape(text.strip())
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        return f"<{tag}>{text}</{tag}>"

    lines = ["<table>", "<tr>" + "".join(cell(c, "th") for c in head) + "</tr>"]
    lines += ["<tr>" + "".join(cell(c, "td") for c in row) + "</tr>" for row in body]
    return "\n".join([*lines, "</table>"])


def _image(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{encoded}">'


def _figures(detail: Detail, results: pd.DataFrame, stem: Path) -> list[Path]:
    """The figures of one detail: its special figure where it has one, else a sweep plot."""
    special = SPECIAL.get((detail.task_type, detail.metric))
    if special is not None:
        return special(results[results["task"] == detail.task], stem.with_suffix(".png"))
    return plot(detail, stem.with_suffix(".png"))


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


def write_report(out_dir: Path, baseline: str | None = None, show_ci: bool = False,
                 significance: Significance | None = None) -> list[Path]:
    """Write leaderboard.md/.csv, report/<task>__<metric>.{md,csv,png}, the sanity-flag table
    and report/index.html (every table and figure, images inlined)."""
    out_dir = Path(out_dir)
    path = out_dir / "results.csv"
    if not path.is_file():
        raise ReportError(f"{path}: no results.csv; run `rubench evaluate` first")
    results = pd.read_csv(path, low_memory=False)
    if results.empty:
        raise ReportError(f"{path}: holds no results")
    table = leaderboard(results)
    written = list(write_leaderboard_files(out_dir, results, table, baseline, show_ci,
                                           significance))
    folder = out_dir / "report"
    folder.mkdir(exist_ok=True)
    source = provenance(results)
    sections = ["<h1>rubench report</h1>", "<h2>Leaderboard</h2>",
                _markdown_table_to_html(leaderboard_markdown(table, baseline, show_ci=show_ci,
                                                             significance=significance)),
                *(f"<p class=note>{html.escape(note)}</p>"
                  for note in notes(table, baseline, show_ci, significance is not None)),
                f"<p class=note>{html.escape(source)}</p>"]
    flags = sanity_flags(results)
    if not flags.empty:
        raised = flags[flags["raised"] == 1]
        summary = (f"{len(flags)} sanity checks of the attacks, {len(raised)} raised"
                   + (":" if len(raised) else "."))
        stem = folder / "sanity_flags"
        write_atomic(stem.with_suffix(".csv"), lambda path: flags.to_csv(path, index=False))
        listing = markdown_table(raised, index=False) if len(raised) else ""
        write_text_atomic(stem.with_suffix(".md"), f"### Sanity flags\n\n{summary}\n\n"
                                                   f"{listing}\n\n{source}\n")
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
        sections += ["<h2>Sanity flags</h2>", f"<p>{html.escape(summary)}</p>"]
        if len(raised):
            sections.append(_markdown_table_to_html(listing))
    shown = figure_checkpoints(results, baseline)
    plotted = results[results["checkpoint"].isin(shown)]
    if len(shown) < results["checkpoint"].nunique():
        sections.append(f"<p class=note>Figures show {len(shown)} of "
                        f"{results['checkpoint'].nunique()} checkpoints ("
                        + html.escape(", ".join(shown)) + "); the tables list every one.</p>")
    tables = details(results)
    figured = tables if len(plotted) == len(results) else details(plotted)  # all shown: reuse
    for_figures = {(d.task, d.metric): d for d in figured}
    figures: list[Job] = []  # drawn together at the end, on every core
    slots: list[int] = []  # where each job's images go in `sections`

    def figure(job: Job) -> None:
        figures.append(job)
        slots.append(len(sections))
        sections.append("")

    for detail in tables:
        stem = folder / _slug(f"{detail.task}__{detail.metric}")
        markdown = to_markdown(detail)
        write_text_atomic(stem.with_suffix(".md"), markdown + "\n" + source + "\n")
        write_atomic(stem.with_suffix(".csv"), flat(detail).to_csv)
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
        sections.append(f"<h2>{html.escape(detail.task)} / {html.escape(detail.metric)}</h2>")
        subset = for_figures.get((detail.task, detail.metric))
        if subset is not None:
            figure((_figures, (subset, plotted[plotted["task"] == detail.task], stem)))
        sections.append(_markdown_table_to_html(markdown.split("\n", 2)[2]))
    binned = _artifacts(out_dir)
    binned = binned[binned["checkpoint"].isin(shown)]
    drawn = (("reliability_", "reliability diagrams", reliability_diagrams),
             ("score_hist", "score histograms", ood_histograms))
    for prefix, title, draw in drawn:
        for task, rows in binned[binned["metric"].str.startswith(prefix)].groupby(
                "task", sort=False):
            slug = prefix.rstrip("_")
            sections.append(f"<h2>{html.escape(task)} / {title}</h2>")
            # one job per scorer: a figure each, drawn side by side
            parts = rows.groupby("scorer", sort=True) if prefix == "score_hist" \
                else [(None, rows)]
            for _, part in parts:
                figure((draw, (part, folder / _slug(f"{task}__{slug}.png"))))
    order = sorted(range(len(figures)), key=lambda i: -_cost(figures[i]))  # longest first
    drawn_images = dict(zip(order, run_jobs([figures[i] for i in order]), strict=True))
    for slot, images in zip(slots, (drawn_images[i] for i in range(len(figures))),
                            strict=True):
        written += images
        sections[slot] = "\n".join(_image(image) for image in images)
    index = folder / "index.html"
    write_text_atomic(index, "<!doctype html><html><head><meta charset=utf-8><title>rubench "
                      f"report</title><style>{_STYLE}</style></head><body>\n"
                      + "\n".join(sections)
                      + f"\n<p class=note>{html.escape(source)}</p>\n</body></html>\n")
    written.append(index)
    return written
