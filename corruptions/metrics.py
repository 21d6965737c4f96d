"""Corruption summaries: per-corruption and per-category means, mean corruption error, mCE.

Conventions (PROTOCOLS.md §3; Hendrycks & Dietterich 2019). E(f, c, s) is top-1 error in percent.
- corruption error CE_u(f, c) = mean over severities of E(f, c, s) (unnormalized);
  `corruption_err_sum` = the sum over severities (PatchUp's Tiny-ImageNet-C figure).
- category error = mean of CE_u over the corruptions of the category.
- `mean_corruption_err` = mean of CE_u over the 15 benchmark corruptions (unnormalized: the
  CIFAR-C / Tiny-ImageNet-C convention). It is *not* mCE.
- `mce` = 100 * mean over the 15 of sum_s E(f,c,s) / sum_s E(baseline,c,s); with AlexNet as the
  baseline on ImageNet-C this is Hendrycks' mCE. `relative_mce` subtracts each model's clean
  error first. The 4 extra corruptions never enter these means.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from corruptions.catalog import ALEXNET_CLEAN_ERR, ALEXNET_ERR, BENCHMARK, CATEGORIES

Errors = Mapping[tuple[str, int], float]  # (corruption, severity) -> top-1 error, percent


def top1_err(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 error in percent."""
    return 100.0 * float(np.mean(np.asarray(logits).argmax(axis=1) != np.asarray(labels)))


def corruption_errors(errors: Errors) -> dict[str, float]:
    """Mean over the severities present of each corruption's error (CE_u)."""
    return {c: float(np.mean(v)) for c, v in _by_corruption(errors).items()}


def _by_corruption(errors: Errors) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = {}
    for (corruption, _), value in sorted(errors.items()):
        grouped.setdefault(corruption, []).append(value)
    return grouped


def category_errors(corruption_err: Mapping[str, float]) -> dict[str, float]:
    """Mean CE_u per category, for the categories whose corruptions are all present."""
    return {cat: float(np.mean([corruption_err[c] for c in names]))
            for cat, names in CATEGORIES.items() if all(c in corruption_err for c in names)}


def mean_corruption_err(corruption_err: Mapping[str, float]) -> float:
    """Unnormalized mean of CE_u over the 15 benchmark corruptions (all must be present)."""
    return float(np.mean([corruption_err[c] for c in _benchmark(corruption_err)]))


def _benchmark(values: Mapping[str, float], what: str = "errors") -> tuple[str, ...]:
    missing = [c for c in BENCHMARK if c not in values]
    if missing:
        raise ValueError(f"{what}: the 15 benchmark corruptions are needed, missing {missing}")
    return BENCHMARK


def mce(corruption_err: Mapping[str, float], baseline_err: Mapping[str, float]) -> float:
    """mCE (x100): mean over the 15 of CE(f, c) = sum_s E(f,c,s) / sum_s E(base,c,s).

    Both mappings hold each corruption's error summed (or averaged: the ratio is the same) over
    the same severities, in the same unit. Extra corruptions in the mappings are ignored.
    """
    _benchmark(baseline_err, "baseline errors")
    return 100.0 * float(np.mean([corruption_err[c] / baseline_err[c]
                                  for c in _benchmark(corruption_err)]))


def relative_mce(corruption_err: Mapping[str, float], clean_err: float,
                 baseline_err: Mapping[str, float], baseline_clean_err: float) -> float:
    """Relative mCE (x100): mean over the 15 of (CE_u(f,c) - clean(f)) / (CE_u(b,c) - clean(b)).

    Errors are means over severities 1..5 (sum_s (E - clean) = 5 (mean - clean)), same unit.
    """
    _benchmark(baseline_err, "baseline errors")
    return 100.0 * float(np.mean([
        (corruption_err[c] - clean_err) / (baseline_err[c] - baseline_clean_err)
        for c in _benchmark(corruption_err)]))


def alexnet_mce(corruption_err: Mapping[str, float]) -> float:
    """ImageNet-C mCE: `mce` against AlexNet's errors (inputs in percent, severities 1..5)."""
    return mce(corruption_err, {c: 100.0 * e for c, e in ALEXNET_ERR.items()})


def alexnet_relative_mce(corruption_err: Mapping[str, float], clean_err: float) -> float:
    """ImageNet-C relative mCE against AlexNet (clean error 43.45 %); inputs in percent."""
    return relative_mce(corruption_err, clean_err, {c: 100.0 * e for c, e in ALEXNET_ERR.items()},
                        100.0 * ALEXNET_CLEAN_ERR)


def baseline_mce_table(results: pd.DataFrame, baseline: str,
                       metric: str = "corruption_err") -> pd.DataFrame:
    """mCE of every checkpoint normalized by checkpoint `baseline`, from long-form results.

    `results` has columns checkpoint, metric, corruption, value (e.g. a `results.csv` of the
    `corruptions` task; rows of other metrics are ignored, as are the extra corruptions) and
    optionally `source` and `task`, which are kept as groups so released and generated sets (or
    two task instances) are never mixed. Returns one row per (group, checkpoint) with column
    `mce_vs_<baseline>`; the baseline itself scores 100.
    """
    rows = results[(results["metric"] == metric) & results["corruption"].isin(BENCHMARK)]
    keys = [k for k in ("task", "source") if k in rows.columns]
    out = []
    for group, part in (rows.groupby(keys, dropna=False) if keys else [((), rows)]):
        table = part.pivot_table(index="checkpoint", columns="corruption", values="value",
                                 aggfunc="first")
        if baseline not in table.index:
            raise ValueError(f"baseline checkpoint {baseline!r} has no {metric} rows"
                             + (f" for {dict(zip(keys, group, strict=True))}" if keys else ""))
        base = table.loc[baseline].to_dict()
        for checkpoint, row in table.iterrows():
            errors = {c: v for c, v in row.to_dict().items() if not pd.isna(v)}
            record = dict(zip(keys, group if isinstance(group, tuple) else (group,),
                              strict=True))
            record.update(checkpoint=checkpoint, **{f"mce_vs_{baseline}": mce(errors, base)})
            out.append(record)
    return pd.DataFrame(out)
