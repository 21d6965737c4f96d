"""Metric rows and their 95 % intervals (Wilson, bootstrap), without torch: the vocabulary of
task reductions, of the store and of the reports."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import binom

from benchmark.records import Condition


@dataclass(frozen=True)
class Metric:
    """One number a task measured, with the conditions it was measured under (eps, severity...).

    `ci_low` / `ci_high` bound a 95 % confidence interval where the task can state one (Wilson
    for rates, see `Metric.rate`; a bootstrap over images for means of rates, see
    `Metric.image_mean`, and for AUROC-type metrics); None where it cannot.
    `higher_is_better` is None for descriptive rows with no better direction (a fitted
    temperature, a histogram bin): reports show them without an arrow and the CI gate only
    reports their changes.
    """

    metric: str
    value: float
    n: int
    higher_is_better: bool | None
    conditions: dict[str, Condition] = field(default_factory=dict)
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def rate(cls, metric: str, count: int, n: int, *, higher_is_better: bool | None = False,
             conditions: dict[str, Condition] | None = None) -> Metric:
        """A rate `count / n` in percent with its 95 % Wilson score interval."""
        low, high = wilson_interval(count, n)
        return cls(metric, 100.0 * count / n, n, higher_is_better, dict(conditions or {}),
                   100.0 * low, 100.0 * high)

    @classmethod
    def image_mean(cls, metric: str, per_image: np.ndarray, seed: int, *,
                   higher_is_better: bool | None = False,
                   conditions: dict[str, Condition] | None = None) -> Metric:
        """The mean over images of per-image fractions, in percent, with a 95 % percentile
        bootstrap interval that resamples images.

        For summaries over several cells measured on the same images (mean error over
        severities, hole sizes, affine sets): pass each image's share of misclassified cells.
        Resampling images keeps the cells' correlation, which a Wilson interval on the pooled
        count would ignore. The bootstrap stream is seeded by `seed`, `metric` and `conditions`.
        """
        values = np.asarray(per_image, dtype=np.float64).ravel()
        if values.size == 0:
            raise ValueError(f"{metric}: no images to average")
        where = dict(conditions or {})
        low, high = bootstrap_mean_interval(values, metric_stream(seed, metric, where))
        return cls(metric, 100.0 * float(values.mean()), int(values.size), higher_is_better,
                   where, 100.0 * low, 100.0 * high)


BOOTSTRAP_RESAMPLES = 1000


def metric_stream(seed: int, metric: str, conditions: dict[str, Condition]
                  ) -> np.random.Generator:
    """A random stream for one metric's bootstrap, independent of every other metric's."""
    label = json.dumps([metric, conditions], sort_keys=True).encode()
    return np.random.default_rng([seed, zlib.crc32(label)])


def bootstrap_resamples(n: int, rng: np.random.Generator,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n items as chunks of index rows (each row: n draws with
    replacement), a chunk at a time, so memory stays bounded whatever their number."""
    chunk = max(1, min(resamples, 2**22 // n))
    for start in range(0, resamples, chunk):
        yield rng.integers(0, n, size=(min(start + chunk, resamples) - start, n))


def bootstrap_mean_interval(values: np.ndarray, rng: np.random.Generator,
                            resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
                            ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampling with replacement)."""
    means = np.concatenate([values[rows].mean(axis=1)
                            for rows in bootstrap_resamples(values.size, rng, resamples)])
    return percentile_interval(means, level)


def wilson_interval(count: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (default 95 %) for a binomial proportion `count / n`, as fractions."""
    if n <= 0 or not 0 <= count <= n:
        raise ValueError(f"need 0 <= count <= n and n > 0, got count={count}, n={n}")
    p = count / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at 0 and n the bound is exactly the value; float rounding must not put it past the value
    low = 0.0 if count == 0 else max(0.0, centre - half)
    high = 1.0 if count == n else min(1.0, centre + half)
    return low, high


def percentile_interval(replicates: np.ndarray | list[float], level: float = 0.95
                        ) -> tuple[float, float]:
    """Percentile bootstrap interval: the (1 -/+ level) / 2 quantiles of the replicates."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    tail = (1.0 - level) / 2
    low, high = np.quantile(np.asarray(replicates, dtype=np.float64), [tail, 1.0 - tail])
    return float(low), float(high)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for paired 0/1 outcomes: `b` and `c` count the
    discordant pairs each way; under no difference b ~ Binomial(b + c, 1/2)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    if b + c == 0:
        return 1.0
    return min(1.0, 2.0 * float(binom.cdf(min(b, c), b + c, 0.5)))


def detectable_difference(discordant: int, alpha: float = 0.05) -> int | None:
    """The smallest |b - c| the exact McNemar test declares significant at `alpha` when
    `discordant` = b + c pairs differ; None when no split of so few pairs can be."""
    for b in range(discordant // 2, -1, -1):  # b = min(b, c) shrinks as |b - c| grows
        if mcnemar_exact(b, discordant - b) < alpha:
            return discordant - 2 * b
    return None


def paired_bootstrap_interval(statistic: Callable[[np.ndarray], np.ndarray], n: int,
                              rng: np.random.Generator, resamples: int = BOOTSTRAP_RESAMPLES,
                              level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of `statistic` over bootstrap resamples of n paired items.

    `statistic` maps a (k, n) block of resampled positions to k values, e.g. the difference of
    two models' mean NLL on the same resampled images: both models see the same resample, which
    is what makes the comparison paired.
    """
    values = np.concatenate([statistic(rows) for rows in bootstrap_resamples(n, rng, resamples)])
    return percentile_interval(values, level)
