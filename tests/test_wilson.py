"""Wilson intervals on rate metrics (checked against scipy's binomtest) and the bootstrap
interval of means over images."""

import numpy as np
import pytest
from scipy.stats import binomtest

from benchmark.stats import Metric, wilson_interval


@pytest.mark.parametrize(("count", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (7, 600),
                                          (299, 600), (4999, 10000)])
def test_wilson_matches_scipy(count, n):
    reference = binomtest(count, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(count, n)
    assert low == pytest.approx(reference.low, abs=1e-12)
    assert high == pytest.approx(reference.high, abs=1e-12)


def test_rate_metric_is_percent_with_interval_around_it():
    metric = Metric.rate("top1_err", 30, 600, conditions={"eps": 0.1})
    assert metric.value == pytest.approx(5.0)
    assert metric.ci_low < 5.0 < metric.ci_high
    assert (metric.n, metric.higher_is_better, metric.conditions) == (600, False, {"eps": 0.1})


@pytest.mark.parametrize(("count", "n"), [(-1, 5), (6, 5), (0, 0)])
def test_wilson_rejects_impossible_counts(count, n):
    with pytest.raises(ValueError, match="count"):
        wilson_interval(count, n)


def test_wilson_bounds_at_zero_and_n_are_exactly_the_value():
    assert Metric.rate("e", 0, 600).ci_low == 0.0
    assert Metric.rate("e", 600, 600).ci_high == 100.0


def test_image_mean_bootstrap_is_seeded_per_metric_and_matches_the_normal_approximation():
    shares = (np.random.default_rng(3).random((2000, 5)) < 0.3).mean(axis=1)
    first = Metric.image_mean("corruption_err", shares, 0, conditions={"corruption": "fog"})
    assert first == Metric.image_mean("corruption_err", shares, 0,
                                      conditions={"corruption": "fog"})
    other = Metric.image_mean("corruption_err", shares, 0, conditions={"corruption": "snow"})
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)  # own stream
    assert first.value == 100 * shares.mean() and first.n == 2000
    half = 1.959964 * 100 * shares.std(ddof=1) / np.sqrt(len(shares))
    assert first.ci_low == pytest.approx(first.value - half, abs=0.15 * half)
    assert first.ci_high == pytest.approx(first.value + half, abs=0.15 * half)
