"""Corruption summaries against hand-computed cases and a second (pandas) implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from corruptions import metrics
from corruptions.catalog import ALEXNET_CLEAN_ERR, ALEXNET_ERR, ALL, BENCHMARK, CATEGORY_OF


def _random_errors(seed: int = 0) -> dict[tuple[str, int], float]:
    rng = np.random.default_rng(seed)
    return {(c, s): float(rng.uniform(5, 95)) for c in ALL for s in range(1, 6)}


def test_top1_err_hand_case() -> None:
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.2, 0.1]])
    # argmax 0, 1, 0, 0 vs labels 0, 0, 0, 1: two wrong of four = 50 %
    assert metrics.top1_err(logits, np.array([0, 0, 0, 1])) == 50.0


def test_means_sums_categories_against_pandas() -> None:
    errors = _random_errors()
    frame = pd.DataFrame([(c, s, v) for (c, s), v in errors.items()],
                         columns=["corruption", "severity", "err"])
    frame["category"] = frame.corruption.map(CATEGORY_OF)
    per_c = frame.groupby("corruption").err.mean()
    assert metrics.corruption_errors(errors) == pytest.approx(per_c.to_dict())
    cat = per_c.groupby(per_c.index.map(CATEGORY_OF)).mean()
    assert metrics.category_errors(per_c.to_dict()) == pytest.approx(cat.to_dict())
    assert metrics.mean_corruption_err(per_c.to_dict()) == pytest.approx(
        per_c[list(BENCHMARK)].mean())
    # the extras never enter: changing them leaves the 15-corruption mean alone
    bumped = dict(per_c) | {"saturate": 1000.0}
    assert metrics.mean_corruption_err(bumped) == metrics.mean_corruption_err(per_c.to_dict())


def test_incomplete_categories_and_benchmark_are_not_summarized() -> None:
    per_c = {"gaussian_noise": 10.0, "shot_noise": 20.0, "impulse_noise": 60.0, "fog": 5.0}
    assert metrics.category_errors(per_c) == {"noise": 30.0}  # (10 + 20 + 60) / 3
    with pytest.raises(ValueError, match="missing"):
        metrics.mean_corruption_err(per_c)


def test_alexnet_mce_golden_cases() -> None:
    # A model with exactly half of AlexNet's error on every corruption: every CE = 0.5, mCE = 50.
    half = {c: 50.0 * e for c, e in ALEXNET_ERR.items()}
    assert metrics.alexnet_mce(half) == pytest.approx(50.0)
    # AlexNet itself: mCE = 100, relative mCE = 100.
    alex = {c: 100.0 * e for c, e in ALEXNET_ERR.items()}
    assert metrics.alexnet_mce(alex) == pytest.approx(100.0)
    assert metrics.alexnet_relative_mce(alex, 100 * ALEXNET_CLEAN_ERR) == pytest.approx(100.0)
    # Clean error 20 %, each corruption's degradation a quarter of AlexNet's: relative mCE = 25.
    quarter = {c: 20.0 + 0.25 * (100 * e - 100 * ALEXNET_CLEAN_ERR) for c, e in ALEXNET_ERR.items()}
    assert metrics.alexnet_relative_mce(quarter, 20.0) == pytest.approx(25.0)
    # Hand case on two corruptions only changed: gaussian_noise 2x AlexNet, fog 0x, rest equal:
    # mCE = 100 * (2 + 0 + 13 * 1) / 15 = 100.
    mixed = dict(alex) | {"gaussian_noise": 2 * alex["gaussian_noise"], "fog": 0.0}
    assert metrics.alexnet_mce(mixed) == pytest.approx(100.0)
    # ImageNet-C's published ResNet-50 mCE from its published mean errors would need the table;
    # here: the extras are ignored even when absurd.
    assert metrics.alexnet_mce(half | {"spatter": 1e6}) == pytest.approx(50.0)


def test_mce_sum_and_mean_inputs_agree_and_need_all_fifteen() -> None:
    errors = _random_errors(1)
    base = _random_errors(2)
    mean_m, mean_b = metrics.corruption_errors(errors), metrics.corruption_errors(base)
    # PatchUp's sums over the five severities (the task's corruption_err_sum)
    sum_m = {c: 5 * v for c, v in mean_m.items()}
    sum_b = {c: 5 * v for c, v in mean_b.items()}
    expected = 100 * np.mean([sum_m[c] / sum_b[c] for c in BENCHMARK])
    assert metrics.mce(mean_m, mean_b) == pytest.approx(expected)
    assert metrics.mce(sum_m, sum_b) == pytest.approx(expected)
    with pytest.raises(ValueError, match="baseline errors"):
        metrics.mce(mean_m, {c: 1.0 for c in BENCHMARK[:14]})


def test_baseline_mce_table_from_long_form_results() -> None:
    rows = []
    for checkpoint, scale in (("erm", 1.0), ("mixup", 0.8), ("cutmix", 0.5)):
        for c in ALL:
            rows.append({"checkpoint": checkpoint, "task": "corruptions",
                         "metric": "corruption_err", "corruption": c,
                         "source": "generated", "value": 40.0 * scale})
        rows.append({"checkpoint": checkpoint, "task": "corruptions",
                     "metric": "mean_corruption_err", "corruption": np.nan,
                     "source": "generated", "value": 40.0 * scale})
    table = metrics.baseline_mce_table(pd.DataFrame(rows), baseline="erm")
    scores = table.set_index("checkpoint")["mce_vs_erm"]
    # every CE is scale * 40 / 40: mCE = 100 * scale
    assert scores.to_dict() == pytest.approx({"erm": 100.0, "mixup": 80.0, "cutmix": 50.0})
    assert set(table.source) == {"generated"}
    with pytest.raises(ValueError, match="baseline checkpoint 'nope'"):
        metrics.baseline_mce_table(pd.DataFrame(rows), baseline="nope")
