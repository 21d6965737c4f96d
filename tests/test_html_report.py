"""report/index.html: its structure, checked in headless Chromium, and the pieces it is built of."""

import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from test_runner import make_zoo

from benchmark.cli import main
from reports.details import Detail, details
from reports.html import write_report
from reports.leaderboard import ARROWS, FLAG_MARK, leaderboard
from reports.page import (
    Anchors,
    checkpoint_table,
    code_spans,
    corruption_grid,
    corruption_grids_html,
    family_of,
)

DATA = Path(__file__).parent / "data"
CHROMIUM = Path("/usr/bin/chromium")
WIDTH = 1400


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, one_thread) -> Path:
    """A report of a real (tiny) evaluation: clean, calibration, occlusion, FGSM and OOD rows,
    with their sweep plots, reliability diagrams and score histograms."""
    root = tmp_path_factory.mktemp("evaluated")
    make_zoo(root / "zoo", seeds=(0, 1))
    out = root / "out"
    assert main(["evaluate", str(root / "zoo"), "--suite", "digits", "--tasks",
                 "clean,calibration,occlusion,fgsm,ood", "--data-root", str(root / "data"),
                 "--limit", "60", "--out", str(out), "--no-progress"]) == 0
    write_report(out, baseline="m0")
    return out / "report" / "index.html"


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory) -> Path:
    """A report of the fixed results (corruptions, a raised sanity flag, a baseline)."""
    out = tmp_path_factory.mktemp("fixture")
    shutil.copy(DATA / "report_results.csv", out / "results.csv")
    write_report(out, baseline="erm")
    return out / "report" / "index.html"


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (its own browser download is not used)."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed: no browser test")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (Debian package `chromium`): no browser test")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.mark.parametrize("report", ["evaluated", "fixture_report"])
def test_page_in_chromium(report, request, browser):
    """At 1400 px: no sideways page scroll, every image loads, no console errors, every
    contents link lands on an element, every section has a unique id."""
    path = request.getfixturevalue(report)
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    errors = []

    def console(message):
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), \
        page.evaluate("Array.from(document.querySelectorAll('body *')).filter(e => "
                      "e.getBoundingClientRect().right > window.innerWidth && "
                      "!e.closest('.table-box')).map(e => e.outerHTML.slice(0, 80))")
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete && "
                           "i.naturalWidth > 0, i.getBoundingClientRect().right])")
    assert images and all(loaded for _, loaded, _ in images), images
    assert all(right <= WIDTH for _, _, right in images)  # scaled into the page
    links = page.evaluate("Array.from(document.querySelectorAll('nav a, main a'))"
                          ".map(a => a.getAttribute('href'))")
    assert links and all(link.startswith("#") for link in links)
    missing = page.evaluate("hrefs => hrefs.filter(h => !document.getElementById(h.slice(1)))",
                            links)
    assert not missing
    ids = page.evaluate("Array.from(document.querySelectorAll('[id]')).map(e => e.id)")
    assert len(ids) == len(set(ids))
    assert page.evaluate("Array.from(document.querySelectorAll('section')).every(s => s.id)")
    assert page.evaluate("Array.from(document.querySelectorAll('section[id] > h2, "
                         "section[id] > h3')).length") == page.evaluate(
        "document.querySelectorAll('section').length")
    page.close()
    assert not errors


def test_wide_tables_scroll_in_their_own_box(fixture_report, browser):
    """At a narrow window the page still does not scroll sideways: tables scroll in their box."""
    page = browser.new_page(viewport={"width": 600, "height": 900})
    page.goto(fixture_report.as_uri())
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    boxes = page.evaluate("Array.from(document.querySelectorAll('.table-box'))"
                          ".filter(b => b.scrollWidth > b.clientWidth).length")
    assert boxes > 0  # the leaderboard at least is wider than 600 px, and scrolls in place
    page.close()


class _Outline(HTMLParser):
    """Sections in order (id, first heading, nesting depth), in-page links, and table rows by
    the id of the section or <details> holding them."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[list] = []
        self.links: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self._open: list[tuple[str, str]] = []  # (tag, id) of the open sections and details
        self._heading: str | None = None
        self._cell: str | None = None

    @property
    def titles(self) -> dict[str, str]:
        return {anchor: title for anchor, title, _ in self.sections}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("section", "details"):
            if tag == "section":
                depth = sum(1 for open_tag, _ in self._open if open_tag == "section")
                self.sections.append([attrs.get("id", ""), "", depth])
            self._open.append((tag, attrs.get("id", "")))
        elif tag in ("h2", "h3") and self.sections and not self.sections[-1][1]:
            self._heading = ""
        elif tag == "a" and attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])
        elif tag == "tr" and self._open:
            self.rows.setdefault(self._open[-1][1], []).append([])
        elif tag in ("td", "th") and self._open:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("section", "details"):
            self._open.pop()
        elif tag in ("h2", "h3") and self._heading is not None:
            self.sections[-1][1] = self._heading
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[self._open[-1][1]][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data
        if self._cell is not None:
            self._cell += data


def _outline(path: Path) -> _Outline:
    parser = _Outline()
    parser.feed(path.read_text())
    return parser


def test_sections_come_by_family_with_arrows_and_anchors(fixture_report):
    outline = _outline(fixture_report)
    top = [anchor for anchor, _, depth in outline.sections if depth == 0]
    assert top == ["leaderboard", "family-clean", "family-corruptions", "family-perturbations",
                   "family-adversarial", "family-ood", "sanity-flags", "checkpoints"]
    titles = outline.titles
    assert titles["fgsm__top1_err"] == "fgsm / top1_err ↓"  # the Markdown heading's arrow
    assert titles["ood__auroc"] == "ood / auroc ↑"
    order = [anchor for anchor, _, _ in outline.sections]
    # the OOD histograms and reliability diagrams sit with their task's tables
    assert order.index("ood__score_hist") == order.index("ood__auroc") + 1
    assert order.index("calibration__reliability") == order.index("calibration__ece") + 1
    assert {"checkpoint-erm", "checkpoint-mixup", "checkpoint-cutout"} <= set(order)
    assert set(order) <= set(outline.links)  # every section is in the contents
    page = fixture_report.read_text()
    assert "Suite <code>digits</code> v1" in page and "`" not in page


def test_checkpoint_section_lists_its_leaderboard_numbers(fixture_report):
    table = leaderboard(pd.read_csv(fixture_report.parent.parent / "results.csv"))
    rows = _outline(fixture_report).rows["checkpoint-mixup"]
    assert rows[0] == ["column", "value"]
    shown = dict(rows[1:])
    expected = {}
    for column, value in table.values.loc["mixup"].dropna().items():
        arrow = ARROWS[table.higher_is_better[column]]
        mark = f" {FLAG_MARK}" if ("mixup", column) in table.flags else ""
        expected[f"{column} {arrow}".rstrip()] = f"{value:.2f}{mark}"
    assert shown == expected
    assert shown["Clean err ↓"] == "2.00"
    assert shown["OOD AUROC (MSP, mean over sets) ↑"] == "85.00"
    flagged = replace(table, flags={("mixup", "Clean err"): ["flag_below_clean"]})
    assert f"<th>Clean err ↓</th><td>2.00 {FLAG_MARK}</td>" in checkpoint_table(flagged, "mixup")


def _corruption_detail(results: pd.DataFrame) -> Detail:
    return next(d for d in details(results) if (d.task, d.metric) == ("corruptions", "top1_err"))


def test_corruption_grid_holds_the_detail_tables_values(fixture_report):
    results = pd.read_csv(fixture_report.parent.parent / "results.csv")
    detail = _corruption_detail(results)
    grid = corruption_grid(detail)
    assert list(grid.columns) == ["1", "3", "5"]
    assert set(grid.index.get_level_values("corruption")) == {"gaussian_noise", "fog"}
    for (category, corruption, severity, source), column in detail.table.items():
        for checkpoint, value in column.items():
            assert grid.at[(checkpoint, corruption), f"{severity:g}"] == value, (
                category, source)
    # and the page shows them: one grid per checkpoint, cells as the detail table writes them
    rows = _outline(fixture_report).rows
    erm = rows["grid-corruptions-erm"]
    assert erm[0] == ["corruption \\ severity", "1", "3", "5"]
    assert {row[0]: row[1:] for row in erm[1:]} == {
        corruption: [f"{v:.2f}" for v in grid.loc[("erm", corruption)]]
        for corruption in ("gaussian_noise", "fog")}
    assert "grid-corruptions-erm" in _outline(fixture_report).links


def test_corruption_grid_names_a_varying_source_not_the_category(fixture_report):
    results = pd.read_csv(fixture_report.parent.parent / "results.csv")
    released = results[results["task"] == "corruptions"].assign(source=float("nan"))
    released["value"] += 100.0
    grid = corruption_grid(_corruption_detail(pd.concat([results, released])))
    assert set(grid.index.get_level_values("corruption")) == {
        "gaussian_noise", "gaussian_noise, generated", "fog", "fog, generated"}
    assert grid.at[("erm", "fog"), "3"] == grid.at[("erm", "fog, generated"), "3"] + 100
    text, where = corruption_grids_html(_corruption_detail(results), Anchors())
    assert list(where) == ["cutout", "erm", "mixup"] and text.count("<details") == 3


def test_backticks_become_code_after_escaping():
    assert code_spans("Suite `digits` v1 <b> & `a<b`") == (
        "Suite <code>digits</code> v1 &lt;b&gt; &amp; <code>a&lt;b</code>")
    assert code_spans("no code") == "no code"


def test_families_by_task_type():
    assert [family_of(t) for t in ("clean", "calibration", "corruptions", "inbetween", "cw",
                                   "worst_case", "transfer", "ood", "my_plugin_task")] == [
        "clean", "clean", "corruptions", "perturbations", "adversarial", "adversarial",
        "transfer", "ood", "other"]


def test_anchors_are_unique_and_url_safe():
    anchors = Anchors()
    assert [anchors(t) for t in ("a b", "a b", "a-b", "ü/x", "")] == [
        "a-b", "a-b-2", "a-b-3", "x", "section"]
