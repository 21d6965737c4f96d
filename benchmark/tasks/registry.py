"""Task registry: a task is a function of (context, params) -> metrics, registered with defaults."""

from __future__ import annotations

import fnmatch
import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.data import EvalData
from benchmark.errors import ModelOutputError, SuiteError
from benchmark.params import NoParams, validate
from benchmark.params import defaults as schema_defaults
from ood.metrics import percentile_interval

Condition = str | int | float


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


@dataclass
class TaskContext:
    """What a task may use: the model ([0, 1] in, logits out), the data, the seed, the device.

    Forward passes over the clean data are shared: `clean_logits()` runs once per context.
    """

    model: torch.nn.Module
    data: EvalData
    seed: int
    device: torch.device
    batch_size: int
    num_workers: int = 0
    progress: bool = True
    meta: dict[str, Any] = field(default_factory=dict)  # arch, num_classes, mean, std, input_size
    data_root: Path | None = None  # where tasks find extra data sets (OOD sets, corrupted copies)
    ckpt_dir: Path | None = None  # where relative checkpoint paths (e.g. a surrogate) resolve
    trust_checkpoints: bool = False  # for checkpoints a task loads itself
    data_id: str = ""  # hash of the evaluated examples: a key for caches shared across models
    _clean_logits: torch.Tensor | None = field(default=None, repr=False)

    def clean_logits(self) -> torch.Tensor:
        """Logits of the model on the clean data, float32 on the CPU, in data order (memoized)."""
        if self._clean_logits is None:
            self._clean_logits = predict(self.model, self.data, self.device, self.batch_size,
                                         self.num_workers, self.progress)
        return self._clean_logits

    def labels(self) -> torch.Tensor:
        """The data's labels as an int64 tensor."""
        return torch.from_numpy(self.data.labels)


def require_finite(logits: torch.Tensor, where: str = "") -> torch.Tensor:
    """`logits`, or a ModelOutputError when any is NaN or infinite: no number is computed from
    such outputs (an argmax over NaN would still 'classify')."""
    bad = ~torch.isfinite(logits)
    if bad.any():
        rows = int(bad.reshape(len(logits), -1).any(dim=1).sum()) if logits.dim() else 1
        raise ModelOutputError(f"the model's outputs {where + ' ' if where else ''}hold NaN or "
                               f"infinite values ({rows} of {len(logits)} images); no metric is "
                               "computed from them")
    return logits


def predict(model: torch.nn.Module, data: EvalData, device: torch.device, batch_size: int,
            num_workers: int = 0, progress: bool = False) -> torch.Tensor:
    """Logits of `model` over `data` (no gradients), float32 on the CPU, in data order; refused
    (ModelOutputError) when any is non-finite."""
    chunks = []
    with torch.inference_mode():
        for images, _ in tqdm(data.batches(batch_size, device, num_workers), desc="forward",
                              total=-(-len(data) // batch_size), leave=False,
                              disable=not progress):
            chunks.append(require_finite(model(images).float().cpu()))
    return torch.cat(chunks) if chunks else torch.empty((0, 0))


TaskFn = Callable[[TaskContext, dict[str, Any]], list[Metric]]


@dataclass(frozen=True)
class TaskPlaces:
    """Where a task's inputs resolve: the evaluated data set's name, --data-root, CKPT_DIR."""

    dataset: str
    data_root: Path | None
    ckpt_dir: Path | None


# (params, places) -> files and folders the task reads besides the evaluated data; the runner
# fingerprints them (benchmark.fingerprint) into the unit's key.
InputsFn = Callable[[dict[str, Any], TaskPlaces], list[Path]]


@dataclass(frozen=True)
class TaskDef:
    """A registered task: function, parameter schema (`benchmark.params`), version (bump when
    its numbers change), and the input files it reads (`inputs`), which key its stored results
    with the parameters."""

    name: str
    fn: TaskFn
    params: type
    version: int
    description: str
    inputs: InputsFn | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        """Every parameter with its default value."""
        return schema_defaults(self.params)


_TASKS: dict[str, TaskDef] = {}


def register_task(name: str, params: type = NoParams, version: int = 1,
                  inputs: InputsFn | None = None) -> Callable[[TaskFn], TaskFn]:
    """Register `fn` as task `name` with its parameter schema (a frozen dataclass, see
    `benchmark.params`); its docstring's first line is the description."""

    def wrap(fn: TaskFn) -> TaskFn:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _TASKS[name] = TaskDef(name, fn, params, version, doc[0] if doc else "", inputs)
        return fn

    return wrap


def get_task(name: str) -> TaskDef:
    """The task registered as `name`."""
    if name not in _TASKS:
        raise SuiteError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def list_tasks(pattern: str = "*") -> list[TaskDef]:
    """Registered tasks whose names match a shell-style pattern."""
    return [_TASKS[name] for name in sorted(fnmatch.filter(_TASKS, pattern))]


def resolve_params(task: TaskDef, params: dict[str, Any], where: str) -> dict[str, Any]:
    """`params` checked against the task's schema and completed with its defaults; a bad
    parameter is a SuiteError naming `where`, the parameter and what is allowed."""
    return validate(task.params, params, f"{where} (task {task.name!r})")
