"""Metrics of task `corruptions` (see `benchmark.tasks.corruptions` for the rows' definitions):
cell errors, their means per corruption, category, severity and over the 15 benchmark
corruptions, and AlexNet-normalized mCE. The -C-bar corruptions' category `c_bar` is averaged
over the -C-bar set evaluated (`corruptions.catalog.c_bar_set`); they never enter the 15's
means or mCE."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from benchmark.names import BENCHMARK_GROUP
from benchmark.records import Records
from benchmark.reductions.core import register_metric
from benchmark.stats import Metric
from corruptions import metrics
from corruptions.catalog import (
    BENCHMARK,
    C_BAR_CATEGORY,
    CATEGORIES,
    SEVERITIES,
    c_bar_set,
    category_of,
    select,
)


@dataclass(frozen=True)
class Cell:
    """One (corruption, severity): per image, whether the model got it wrong; cells with equal
    `images` were measured on the same images, in the same order."""

    wrong: np.ndarray
    images: int


def wants_mce(dataset: str, source: str, severities: list[int]) -> bool:
    """AlexNet-normalized mCE: the released ImageNet-C at all five severities (it needs the
    clean error too)."""
    return dataset == "imagenet" and source == "released" and list(severities) == list(SEVERITIES)


def cell_conditions(corruption: str, severity: int, source: str) -> dict[str, Any]:
    """The conditions of a (corruption, severity) cell: its `top1_err` row's."""
    return {"corruption": corruption, "severity": severity, "category": category_of(corruption),
            "source": source}


CLEAN = {"corruption": "clean"}  # the clean-data table's conditions (mCE's clean error)


@register_metric("corruptions", "corruption_errors")
def corruption_errors(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """The task's rows from its cell tables: cells whose `image_id` columns (trees) or `index`
    columns (`.npy`) are equal hold the same images; the clean table gives relative mCE's
    clean error."""
    names = select(params["corruptions"], list(params["categories"]), c_bar=True)
    severities = sorted(params["severities"])
    source = records.facts["source"]
    cells: dict[tuple[str, int], Cell] = {}
    image_sets: list[np.ndarray] = []  # the distinct image lists met so far
    for corruption in names:
        for severity in severities:
            table = records.one(**cell_conditions(corruption, severity, source))
            images = table["image_id"] if "image_id" in table.columns else table["index"]
            cells[corruption, severity] = Cell(~table["correct"],
                                               _image_set(image_sets, images))
    clean_err = None
    if wants_mce(records.facts["dataset"], source, severities) \
            and all(c in names for c in BENCHMARK):
        clean_err = 100.0 * float(np.mean(~records.one(**CLEAN)["correct"]))
    return summarize(cells, source, severities, seed, clean_err)


def _image_set(known: list[np.ndarray], images: np.ndarray) -> int:
    """The position of `images` (per-image ids, in order) in `known`, appended if new."""
    for position, other in enumerate(known):
        if np.array_equal(other, images):
            return position
    known.append(images)
    return len(known) - 1


def summarize(cells: dict[tuple[str, int], Cell], source: str, severities: list[int],
              seed: int, clean_err: float | None = None) -> list[Metric]:
    """Rows: per (corruption, severity), per corruption, per category, and over the 15; with
    `clean_err` (the clean top-1 error, percent) also AlexNet-normalized `mce` and
    `relative_mce`."""
    out = [Metric.rate("top1_err", int(cell.wrong.sum()), len(cell.wrong), conditions=
                       cell_conditions(c, s, source))
           for (c, s), cell in cells.items()]
    per_corruption = metrics.corruption_errors({key: m.value for key, m in
                                                zip(cells, out, strict=True)})
    of = {c: [cell for (name, _), cell in cells.items() if name == c] for c in per_corruption}
    for c, value in per_corruption.items():
        mean = _mean_over_cells("corruption_err", of[c], value, seed,
                                {"corruption": c, "category": category_of(c), "source": source})
        out += [mean, _times(mean, "corruption_err_sum", len(of[c]))]
    for category, names in _whole_categories(per_corruption).items():
        value = float(np.mean([per_corruption[c] for c in names]))
        out.append(_mean_over_cells("category_err", [x for c in names for x in of[c]],
                                    value, seed, {"category": category, "source": source}))
    out += _severity_rows(cells, source, severities, seed)
    if all(c in per_corruption for c in BENCHMARK):
        mean = _mean_over_cells("mean_corruption_err", [x for c in BENCHMARK for x in of[c]],
                                metrics.mean_corruption_err(per_corruption), seed,
                                {"source": source})
        out += [mean, _times(mean, "mean_corruption_err_sum", len(severities))]
        if clean_err is not None:
            out.append(Metric("mce", metrics.alexnet_mce(per_corruption), mean.n, False,
                              {"source": source}))
            out.append(Metric("relative_mce",
                              metrics.alexnet_relative_mce(per_corruption, clean_err), mean.n,
                              False, {"source": source}))
    return out


def _whole_categories(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The categories all of whose corruptions are in `names`, each with its corruptions: the
    -C ones (the extras included), then `c_bar` with the -C-bar set evaluated."""
    present = set(names)
    whole = {category: members for category, members in CATEGORIES.items()
             if present.issuperset(members)}
    bar = c_bar_set(present)
    return whole | ({C_BAR_CATEGORY: bar} if bar else {})


def _severity_rows(cells: dict[tuple[str, int], Cell], source: str, severities: list[int],
                   seed: int) -> list[Metric]:
    """`severity_err` per (category, severity): the mean over the category's corruptions at that
    severity (`c_bar`: the -C-bar set's), and (category "benchmark") over the 15 benchmark
    corruptions — each only when all its corruptions are evaluated; what the error-vs-severity
    figure draws."""
    rows = []
    groups = [*_whole_categories(c for c, _ in cells).items(), (BENCHMARK_GROUP, BENCHMARK)]
    for category, names in groups:
        for severity in severities:
            chosen = [cells[c, severity] for c in names if (c, severity) in cells]
            if len(chosen) < len(names):  # as `category_err`: only over a whole category
                continue
            value = float(np.mean([100.0 * cell.wrong.mean() for cell in chosen]))
            rows.append(_mean_over_cells("severity_err", chosen, value, seed, {
                "category": category, "severity": severity, "source": source}))
    return rows


def _mean_over_cells(metric: str, cells: list[Cell], value: float, seed: int,
                     conditions: dict[str, Any]) -> Metric:
    """The mean error over `cells` (percent). Cells on the same images: each image's share of
    wrong cells, bootstrapped over images. Otherwise `value` (the mean of the cell rates),
    no interval, n the cells' total."""
    if len({cell.images for cell in cells}) == 1:
        shares = np.mean([cell.wrong for cell in cells], axis=0)
        return Metric.image_mean(metric, shares, seed, conditions=conditions)
    return Metric(metric, value, sum(len(cell.wrong) for cell in cells), False, conditions)


def _times(metric: Metric, name: str, factor: int) -> Metric:
    """`metric` times `factor` under another name (a sum of `factor` equal-weight terms is
    `factor` times their mean), its interval scaled alike."""
    def scale(v: float | None) -> float | None:
        return None if v is None else factor * v

    return replace(metric, metric=name, value=factor * metric.value, conditions=dict(
        metric.conditions), ci_low=scale(metric.ci_low), ci_high=scale(metric.ci_high))
