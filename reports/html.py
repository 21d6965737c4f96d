"""`rubench report`: leaderboard, per-task detail tables and plots, and one self-contained HTML."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from reports.details import details, flat, plot, to_markdown
from reports.errors import ReportError
from reports.leaderboard import leaderboard, provenance, write_leaderboard
from reports.leaderboard import to_markdown as leaderboard_markdown

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


def write_report(out_dir: Path, baseline: str | None = None) -> list[Path]:
    """Write leaderboard.md/.csv, report/<task>__<metric>.{md,csv,png} and report/index.html."""
    out_dir = Path(out_dir)
    written = list(write_leaderboard(out_dir, baseline))
    results = pd.read_csv(out_dir / "results.csv")
    if results.empty:
        raise ReportError(f"{out_dir / 'results.csv'}: holds no results")
    folder = out_dir / "report"
    folder.mkdir(exist_ok=True)
    source = provenance(results)
    sections = ["<h1>rubench report</h1>",
                "<h2>Leaderboard</h2>",
                _markdown_table_to_html(leaderboard_markdown(leaderboard(results), baseline)),
                f"<p class=note>{html.escape(source)}</p>"]
    for detail in details(results):
        stem = folder / _slug(f"{detail.task}__{detail.metric}")
        markdown = to_markdown(detail)
        stem.with_suffix(".md").write_text(markdown + "\n" + source + "\n")
        flat(detail).to_csv(stem.with_suffix(".csv"))
        written += [stem.with_suffix(".md"), stem.with_suffix(".csv")]
        sections.append(f"<h2>{html.escape(detail.task)} / {html.escape(detail.metric)}</h2>")
        image = plot(detail, stem.with_suffix(".png"))
        if image is not None:
            written.append(image)
            encoded = base64.b64encode(image.read_bytes()).decode()
            sections.append(f'<img alt="{html.escape(detail.metric)}" '
                            f'src="data:image/png;base64,{encoded}">')
        sections.append(_markdown_table_to_html(markdown.split("\n", 2)[2]))
    index = folder / "index.html"
    index.write_text("<!doctype html><html><head><meta charset=utf-8><title>rubench report"
                     f"</title><style>{_STYLE}</style></head><body>\n" + "\n".join(sections)
                     + "\n</body></html>\n")
    written.append(index)
    return written
