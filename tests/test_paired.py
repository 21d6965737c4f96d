"""Paired statistics: McNemar against scipy's exact binomial test, the paired bootstrap against a
naive loop, and `rubench check` judging by paired tests where per-sample records exist."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from benchmark.paired import Pairing
from benchmark.records import Records, condition_key
from benchmark.stats import (
    detectable_difference,
    mcnemar_exact,
    paired_bootstrap_interval,
    percentile_interval,
)
from benchmark.store import StoredUnit
from reports.check import Tolerances, compare


@pytest.mark.parametrize("b", [0, 1, 3, 7, 20, 55])
@pytest.mark.parametrize("c", [0, 2, 5, 19, 60])
def test_mcnemar_is_scipys_exact_binomial_test(b, c):
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_detectable_difference_is_the_smallest_significant_split():
    assert detectable_difference(5) is None  # 2 * 0.5**5 = 0.0625: nothing at 5 pairs
    assert detectable_difference(6) == 6
    for m in range(6, 80):
        d = detectable_difference(m)
        b = (m - d) // 2
        assert binomtest(b, m, 0.5).pvalue < 0.05
        if d + 2 <= m:  # one pair fewer each way is not significant
            assert binomtest(b + 1, m, 0.5).pvalue >= 0.05


def test_paired_bootstrap_equals_a_naive_loop():
    values = np.random.default_rng(3).normal(size=(2, 137))
    diff = values[1] - values[0]
    got = paired_bootstrap_interval(lambda rows: diff[rows].mean(axis=1), diff.size,
                                    np.random.default_rng(11), resamples=500)
    rng = np.random.default_rng(11)
    naive = [diff[rng.integers(0, diff.size, diff.size)].mean() for _ in range(500)]
    assert got == pytest.approx(percentile_interval(naive), abs=1e-12)


def _units(correct: np.ndarray, nll: np.ndarray, scores: tuple[np.ndarray, np.ndarray],
           identity: str = "the same images") -> dict:
    clean, ood = Records(), Records()
    clean.add(index=np.arange(len(correct)), correct=correct, nll=nll)
    ood.add({"scorer": "msp", "ood_set": "in_distribution"}, index=np.arange(len(scores[0])),
            score=scores[0])
    ood.add({"scorer": "msp", "ood_set": "noise"}, index=np.arange(len(scores[1])),
            score=scores[1])
    return {("m", "clean"): (StoredUnit("clean", {}, 0, identity), clean),
            ("m", "ood"): (StoredUnit("ood", {}, 0, identity), ood)}


def _key(task: str, metric: str, **conditions) -> tuple[str, str, str, str]:
    return ("m", task, metric, condition_key(conditions))


def test_pairing_counts_discordant_images_and_pairs_means_and_ood_metrics():
    rng = np.random.default_rng(0)
    n = 400
    before = rng.random(n) < 0.9
    after = before.copy()
    after[:30] = False  # 30 - (already wrong among them) newly wrong images
    after[300:305] = True
    worse, better = int((before & ~after).sum()), int((~before & after).sum())
    nll = rng.exponential(size=n)
    id_scores, ood_scores = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    pairing = Pairing(_units(before, nll, (id_scores, ood_scores)),
                      _units(after, nll + 0.2, (id_scores, ood_scores + 0.8)))

    rate = pairing.test(_key("clean", "top1_err"))
    assert rate.p_value == pytest.approx(binomtest(better, worse + better, 0.5).pvalue)
    assert rate.significant and rate.n == n
    assert rate.detectable == pytest.approx(100 * detectable_difference(worse + better) / n)
    mean = pairing.test(_key("clean", "nll"))
    assert mean.ci_low == pytest.approx(0.2) and mean.ci_high == pytest.approx(0.2)
    auroc = pairing.test(_key("ood", "auroc", scorer="msp", ood_set="noise"))
    assert auroc.significant and auroc.ci_high < 0  # OOD scores moved towards the ID ones
    assert pairing.test(_key("ood", "auroc", scorer="msp", ood_set="mean")) is None
    assert pairing.test(_key("clean", "ece")) is None


def test_no_pair_without_the_same_images():
    rng = np.random.default_rng(1)
    scores = (rng.normal(size=10), rng.normal(size=10))
    base = _units(np.ones(50, bool), np.zeros(50), scores)
    now = _units(np.ones(50, bool), np.zeros(50), scores)
    assert Pairing(base, now).test(_key("clean", "top1_err")) is not None
    table = now[("m", "clean")][1].tables[0]
    table.columns["index"][:] = np.arange(50) + 1  # another subset of the data
    assert Pairing(base, now).test(_key("clean", "top1_err")) is None
    # the same positions of other images (another seed's subset, another data file)
    other = _units(np.ones(50, bool), np.zeros(50), scores, identity="another seed")
    assert Pairing(base, other).test(_key("clean", "top1_err")) is None
    assert Pairing(base, other).test(_key("ood", "auroc", scorer="msp", ood_set="noise")) \
        is None


def _frame(value: float, low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame([{"checkpoint": "m", "task": "clean", "metric": "top1_err",
                          "conditions": json.dumps({}), "value": value, "n": 400,
                          "higher_is_better": False, "ci_low": low, "ci_high": high}])


def test_check_uses_the_paired_test_both_ways():
    """Intervals overlap either way (unpaired: within noise); the paired test tells a
    consistent regression from a reshuffle of the same number of errors."""
    n = 400
    before = np.ones(n, bool)
    before[:40] = False  # 10 % error
    consistent = before.copy()
    consistent[40:56] = False  # 16 more errors, none fixed
    reshuffled = before.copy()
    reshuffled[:30] = True  # 30 fixed, 46 new: the same net +16
    reshuffled[40:86] = False
    scores = (np.zeros(3), np.ones(3))
    baseline = _frame(10.0, 7.4, 13.3)
    current = _frame(14.0, 11.0, 17.6)
    tolerances = Tolerances(default=0.5)

    def verdict(after: np.ndarray) -> str:
        pairing = Pairing(_units(before, np.zeros(n), scores), _units(after, np.zeros(n), scores))
        [v] = compare(baseline, current, tolerances, pairing=pairing.test)
        assert v.paired is not None
        return v.verdict

    assert compare(baseline, current, tolerances)[0].verdict == "within-noise"
    assert verdict(consistent) == "REGRESSED"
    assert verdict(reshuffled) == "within-noise"


def _corruption_units(wrong: dict[tuple[str, int], np.ndarray], identity: str = "same") -> dict:
    records = Records(facts={"dataset": "cifar10", "source": "released", "layout": "npy"})
    for (corruption, severity), cell in wrong.items():
        records.add({"corruption": corruption, "severity": severity, "category": "weather",
                     "source": "released"}, index=np.arange(len(cell)), correct=~cell)
    return {("m", "corruptions"): (StoredUnit("corruptions", {}, 0, identity), records)}


def test_means_over_cells_pair_each_images_share_of_wrong_cells():
    n = 400
    cells = [("fog", 1), ("fog", 2), ("snow", 1), ("snow", 2)]
    base = {cell: np.zeros(n, bool) for cell in cells}
    now = {cell: np.arange(n) < 40 for cell in cells}  # 40 more images wrong in every cell
    now["snow", 2] = np.zeros(n, bool)
    pairing = Pairing(_corruption_units(base), _corruption_units(now))
    fog = pairing.test(_key("corruptions", "corruption_err", corruption="fog",
                            category="weather", source="released"))
    half = 100 * 1.96 * np.sqrt(0.1 * 0.9 / n)  # a share of 10 % of 400 images
    assert fog.significant and fog.ci_low == pytest.approx(10 - half, abs=0.6)
    assert fog.ci_high == pytest.approx(10 + half, abs=0.6)
    fog_sum = pairing.test(_key("corruptions", "corruption_err_sum", corruption="fog",
                                category="weather", source="released"))
    assert (fog_sum.ci_low, fog_sum.ci_high) == pytest.approx((2 * fog.ci_low,
                                                               2 * fog.ci_high))
    snow = pairing.test(_key("corruptions", "corruption_err", corruption="snow",
                             category="weather", source="released"))
    assert snow.ci_low < 5 < snow.ci_high  # half the snow cells moved: a mean shift of 5
    other_images = _corruption_units(now)
    other_images["m", "corruptions"][1].tables[0].columns["index"][:] += 1
    assert Pairing(_corruption_units(base), other_images).test(_key(
        "corruptions", "corruption_err", corruption="fog", category="weather",
        source="released")) is None  # fog's cells no longer hold the same images


def test_calibration_errors_are_recomputed_on_the_same_resamples():
    from benchmark.stats import metric_stream
    from ood.calibration import ece

    rng = np.random.default_rng(5)
    n = 300
    confidence = rng.uniform(0.3, 1.0, n)
    correct = rng.random(n) < confidence
    overconfident = np.minimum(1.0, confidence + 0.3)

    def units(conf: np.ndarray) -> dict:
        records = Records()
        records.add({"scaling": "none"}, index=np.arange(n), correct=correct, confidence=conf,
                    brier=(1 - conf) ** 2)
        return {("m", "calibration"): (StoredUnit("calibration", {"bins": 15}, 0, "same"),
                                       records)}

    got = Pairing(units(confidence), units(overconfident)).test(
        _key("calibration", "ece", scaling="none"))
    stream = metric_stream(0, "paired:ece", {"conditions": condition_key({"scaling": "none"})})
    naive = []
    for _ in range(1000):
        rows = stream.integers(0, n, n)
        naive.append(100 * (ece(overconfident[rows], correct[rows])
                            - ece(confidence[rows], correct[rows])))
    assert (got.ci_low, got.ci_high) == pytest.approx(percentile_interval(naive), abs=1e-9)
    assert got.significant and got.ci_low > 0
