"""The HTML of `report/index.html`: a headline section, a table of contents, one section per
family of tasks (each figure beside its table) and one per checkpoint, every section anchored."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports.details import Detail, column_format
from reports.leaderboard import ARROWS, FLAG_MARK, Table, format_condition

STYLE = """*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em 2em;max-width:1600px;
overflow-wrap:anywhere}
table{border-collapse:collapse;margin:0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;overflow-wrap:normal}
td{white-space:nowrap}th{vertical-align:bottom}
th:first-child,td:first-child{text-align:left}
.table-box{overflow-x:auto;max-width:100%;margin:.5em 0}
.pair{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.pair>.table-box{flex:1 1 30em;min-width:0}
.pair>figure{flex:1 1 30em;min-width:0;margin:.5em 0}
img{max-width:100%;height:auto;border:1px solid #eee}
main>section{border-top:2px solid #ddd;margin-top:2em}
.note{color:#555;font-size:13px}code{background:#f4f4f4;padding:0 .2em}
nav ul{margin:.2em 0}nav ul ul{padding-left:1.2em;font-size:13px}
nav ul ul li{display:inline;margin-right:.9em}
details{margin:.3em 0}summary{cursor:pointer}
#checkpoints>section{display:inline-block;vertical-align:top;margin-right:2em;max-width:100%}"""

# Families of task types, in page order; task types not listed go to OTHER.
FAMILIES = (
    ("clean", "Clean & calibration", ("clean", "calibration", "selective")),
    ("corruptions", "Corruptions", ("corruptions",)),
    ("shift", "Natural distribution shift", ("shift",)),
    ("perturbations", "Occlusion, affine & in-between", ("occlusion", "affine", "inbetween")),
    ("adversarial", "Adversarial", ("fgsm", "ifgsm", "pgd", "attack", "autoattack", "deepfool",
                                    "cw", "ddn", "worst_case")),
    ("transfer", "Transfer", ("transfer",)),
    ("ood", "Out-of-distribution detection", ("ood",)),
)
OTHER = ("other", "Other")
_FAMILY_OF = {task_type: key for key, _, types in FAMILIES for task_type in types}


def family_of(task_type: str) -> str:
    """The family key a task type's tables and figures are shown under."""
    return _FAMILY_OF.get(task_type, OTHER[0])


class Anchors:
    """Unique, URL-safe element ids: the same text twice gets `-2`, `-3`, ..."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def __call__(self, text: str) -> str:
        """A new id made of `text`."""
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "section"
        anchor, count = base, 1
        while anchor in self._taken:
            count += 1
            anchor = f"{base}-{count}"
        self._taken.add(anchor)
        return anchor


def code_spans(text: str) -> str:
    """`text` escaped for HTML, with Markdown `backticks` as <code> (provenance, notes)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def markdown_table_html(markdown: str) -> str:
    """A Markdown table (rubench's own: no escaped pipes) as an HTML table, **bold** kept."""
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


def table_box(table: str) -> str:
    """A table in its own horizontally scrolling box, so the page never scrolls sideways."""
    return f"<div class=table-box>{table}</div>"


def image(path: Path) -> str:
    """An <img> with the PNG at `path` inlined, so the page opens offline."""
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{encoded}">'


def heading(detail: Detail) -> str:
    """A detail table's heading, with the direction arrow its Markdown heading has."""
    return f"{detail.task} / {detail.metric} {ARROWS[detail.higher_is_better]}".rstrip()


def has_corruption_grid(detail: Detail) -> bool:
    """Whether a detail is a corruptions top-1 error over corruption x severity."""
    return (detail.task_type == "corruptions" and detail.metric == "top1_err"
            and {"corruption", "severity"} <= set(detail.table.columns.names))


def corruption_grid(detail: Detail) -> pd.DataFrame:
    """A corruption detail as grids: rows (checkpoint, corruption), columns the severities
    (cells without both left out); a corruption's label adds any other condition that still
    varies (e.g. source), not the category it implies."""
    others = [n for n in detail.table.columns.names if n != "severity"]
    long = detail.table.stack(others, future_stack=True).dropna(how="all")
    long = long.loc[long.index.get_level_values("corruption").notna(), long.columns.notna()]
    kept = ["corruption", *(n for n in others if n not in ("corruption", "category")
                            and long.index.get_level_values(n).nunique(dropna=False) > 1)]
    labels = [", ".join(format_condition(v, n) for n, v in zip(kept, key, strict=True)
                        if not pd.isna(v))
              for key in zip(*(long.index.get_level_values(n) for n in kept), strict=True)]
    long.index = pd.MultiIndex.from_arrays([long.index.get_level_values("checkpoint"), labels],
                                           names=["checkpoint", "corruption"])
    long.columns = pd.Index([format_condition(v, "severity") for v in long.columns],
                            name="severity")
    return long


def corruption_grids_html(detail: Detail, anchors: Anchors) -> tuple[str, dict[str, str]]:
    """The corruption x severity grid of each checkpoint, in a <details> each (numbers
    written alike in all, as `column_format` writes a column), and each grid's anchor."""
    grid = corruption_grid(detail)
    cells = [[html.escape(text) for text in map(column_format(grid[column]), grid[column])]
             for column in grid.columns]
    rows: dict[str, list[str]] = {}
    for (name, label), values in zip(grid.index, zip(*cells, strict=True), strict=True):
        rows.setdefault(name, []).append(f"<tr><td>{html.escape(label)}</td>"
                                         + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
    head = "<tr><th>corruption \\ severity</th>" + "".join(
        f"<th>{html.escape(c)}</th>" for c in grid.columns) + "</tr>"
    parts, where = [], {}
    for name, lines in rows.items():
        where[name] = anchors(f"grid-{detail.task}-{name}")
        parts.append(f"<details id={where[name]}><summary>{html.escape(name)}: "
                     f"{html.escape(detail.metric)} per corruption x severity</summary>"
                     + table_box("\n".join(["<table>", head, *lines, "</table>"]))
                     + "</details>")
    return "\n".join(parts), where


def checkpoint_table(table: Table, name: str) -> str:
    """One checkpoint's leaderboard numbers as a two-column table: column header -> value."""
    rows = []
    for column, value in table.values.loc[name].items():
        if pd.isna(value):
            continue
        header = f"{column} {ARROWS[table.higher_is_better.get(column)]}".rstrip()
        mark = f" {FLAG_MARK}" if (name, column) in table.flags else ""
        rows.append(f"<tr><th>{html.escape(header)}</th><td>{value:.2f}{mark}</td></tr>")
    return "\n".join(["<table>", "<tr><th>column</th><th>value</th></tr>", *rows, "</table>"])


@dataclass
class Item:
    """A block of a section: a heading, a table, the figures drawn for it beside the table,
    and any HTML under them."""

    anchor: str
    title: str
    task: str = ""
    table: str = ""
    after: str = ""
    images: list[Path] = field(default_factory=list)

    def html(self) -> str:
        """The block as an anchored <section>."""
        figure = f"<figure>{''.join(map(image, self.images))}</figure>" if self.images else ""
        body = table_box(self.table) if self.table else ""
        return (f"<section id={self.anchor} class=item><h3>{html.escape(self.title)}</h3>"
                f"<div class=pair>{body}{figure}</div>{self.after}</section>")


@dataclass
class Section:
    """A top-level section of the page: its own HTML, then its items (listed in the TOC)."""

    anchor: str
    title: str
    body: list[str] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    def html(self) -> str:
        """The section with its items."""
        return "\n".join([f"<section id={self.anchor}>"
                          f"<h2>{html.escape(self.title)}</h2>", *self.body,
                          *(item.html() for item in self.items), "</section>"])


def contents(sections: list[Section]) -> str:
    """The table of contents: every section, and under it its items."""
    lines = ["<nav id=contents><h2>Contents</h2><ul>"]
    for section in sections:
        items = "".join(f'<li><a href="#{item.anchor}">{html.escape(item.title)}</a></li>'
                        for item in section.items)
        lines.append(f'<li><a href="#{section.anchor}">{html.escape(section.title)}</a>'
                     + (f"<ul>{items}</ul>" if items else "") + "</li>")
    return "\n".join([*lines, "</ul></nav>"])


def render(headline: Section, sections: list[Section], source: str) -> str:
    """The whole page: title, the headline section, the contents, the other sections, and the
    provenance line."""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
            f"<title>rubench report</title><style>{STYLE}</style></head><body>\n"
            "<h1>rubench report</h1>\n<main>\n" + headline.html() + "\n"
            + contents([headline, *sections]) + "\n"
            + "\n".join(section.html() for section in sections)
            + f"\n</main>\n<footer class=note>{code_spans(source)}</footer>\n</body></html>\n")
