"""Task registry: a task is a function of (context, params) -> metrics, registered with defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.data import EvalData
from benchmark.errors import ModelOutputError, SuiteError
from benchmark.inputs import InputCache, InputRequest
from benchmark.params import NoParams, validate
from benchmark.params import defaults as schema_defaults
from benchmark.records import Records
from benchmark.reductions import reduce_records
from benchmark.registry import UnknownName, registry
from benchmark.stats import Metric

# `--precision`: the autocast dtype of forward-only passes (None: float32 throughout).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16,
                                              "fp16": torch.float16}


class Autocast(torch.nn.Module):
    """`model` run under autocast at `dtype`, its logits returned in float32: what forward-only
    passes use at a reduced `--precision` (attacks and ODIN keep the float32 model)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            return self.model(x).float()


def inference_model(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The model forward-only passes run: itself at fp32, else wrapped in `Autocast`."""
    dtype = PRECISIONS[precision]
    return model if dtype is None else Autocast(model, dtype)


@dataclass(frozen=True)
class Shard:
    """Positions [start, stop) on a task's shard axis (`Axis`): part `part` of `parts` of one
    unit, measured apart and merged by concatenating records (`benchmark.records.concat`)."""

    start: int
    stop: int
    part: int
    parts: int


@dataclass(frozen=True)
class Axis:
    """What a sample-decomposable task can be split along: `length` positions (images, or
    corruption cells of `images` images each); `aligned` positions are split at multiples of
    the batch size, so every shard's batches are the unsplit run's batches."""

    length: int
    images: int = 1
    aligned: bool = True


@dataclass
class TaskContext:
    """What a task may use: the model ([0, 1] in, logits out), the data, the seed, the device.

    Forward passes over the clean data are shared: `clean_logits()` runs once per context.
    Forward-only passes use `inference_model` (autocast at `precision`); gradients (attacks,
    ODIN) use `model`, always float32.
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
    # A folder for the running unit's partial progress (a re-run after a kill resumes from it;
    # the runner removes it once the unit is stored); None: the task cannot resume.
    scratch: Path | None = None
    precision: str = "fp32"  # forward-only passes (`PRECISIONS`)
    shard: Shard | None = None  # the part of the task's `Axis` this unit measures (None: all)
    requests: dict[str, InputRequest] = field(default_factory=dict)  # the running task's inputs
    cache: InputCache = field(default_factory=InputCache, repr=False)  # the run's one cache
    _clean_logits: torch.Tensor | None = field(default=None, repr=False)
    _clean_logits_fp32: torch.Tensor | None = field(default=None, repr=False)

    @property
    def inference_model(self) -> torch.nn.Module:
        """The model of forward-only passes: `model` under autocast at `precision`."""
        return inference_model(self.model, self.precision)

    def input(self, name: str) -> Any:
        """The running task's declared input `name`, loaded once per run (`benchmark.inputs`)."""
        if name not in self.requests:
            raise KeyError(f"the task declared no input {name!r} (declared: "
                           f"{', '.join(self.requests) or 'none'})")
        request = self.requests[name]
        return self.cache.get(request.key(self), lambda: request.load(self))

    def clean_logits(self, full_precision: bool = False) -> torch.Tensor:
        """Logits of the model on the clean data, float32 on the CPU, in data order (memoized):
        computed at the run's `precision`, or in float32 with `full_precision` (the attacks',
        whose clean mistakes must be the float32 model's)."""
        if full_precision and PRECISIONS[self.precision] is not None:
            if self._clean_logits_fp32 is None:
                self._clean_logits_fp32 = predict(self.model, self.data, self.device,
                                                  self.batch_size, self.num_workers,
                                                  self.progress)
            return self._clean_logits_fp32
        if self._clean_logits is None:
            self._clean_logits = predict(self.inference_model, self.data, self.device,
                                         self.batch_size, self.num_workers, self.progress)
        return self._clean_logits

    def part(self, length: int) -> slice:
        """The positions of a shard axis of `length` this unit measures (all when unsplit)."""
        if self.shard is None:
            return slice(0, length)
        if self.shard.stop > length:
            raise ValueError(f"shard {self.shard.start}:{self.shard.stop} lies beyond the "
                             f"task's {length} positions")
        return slice(self.shard.start, self.shard.stop)

    def clean_logits_at(self, positions: np.ndarray, full_precision: bool = False
                        ) -> torch.Tensor:
        """`clean_logits` of the images at `positions` (sorted, distinct): rows of the shared
        pass over all images, except in a shard that finds it not run, which passes over its
        own images only (the same batches for a shard of the images themselves; a shard of an
        attack's `limit` subset batches them apart, equal on the CPU, within rounding of
        batch-dependent GPU kernels)."""
        memo = self._clean_logits_fp32 if full_precision and PRECISIONS[self.precision] \
            is not None else self._clean_logits
        if self.shard is None or memo is not None or len(positions) == len(self.data):
            return self.clean_logits(full_precision)[torch.from_numpy(np.asarray(positions))]
        model = self.model if full_precision else self.inference_model
        return predict(model, self.data.subset(positions), self.device, self.batch_size,
                       self.num_workers, self.progress)

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


def classification_columns(logits: torch.Tensor, labels: torch.Tensor,
                           topk: tuple[int, ...] = (5,)) -> dict[str, np.ndarray]:
    """Per-sample columns of a classifier's outputs, the one convention of every task:
    `correct` (the first maximal logit is the label: ties go to the lowest class), for each k
    in `topk` below the number of classes `correct_top{k}` (the label among the k highest, or
    a top-1 hit), `pred` (int32) and `confidence` (float32 top softmax probability,
    descriptive). A single row of logits stands for the same image under every label."""
    logits, labels = logits.detach().float().cpu(), labels.cpu()
    n = len(labels)
    pred = logits.argmax(dim=1)
    hit = pred == labels
    columns = {"correct": hit.numpy()}
    for k in topk:
        if 1 < k < logits.shape[1]:
            top = logits.topk(k, dim=1).indices
            columns[f"correct_top{k}"] = ((top == labels[:, None]).any(dim=1) | hit).numpy()
    columns["pred"] = np.ascontiguousarray(pred.to(torch.int32).expand(n).numpy())
    columns["confidence"] = np.ascontiguousarray(
        torch.softmax(logits, dim=1).amax(dim=1).expand(n).numpy())
    return columns


# A task measures: (context, params) -> per-sample records. Its metrics are the metric functions
# registered for its type (`benchmark.reductions`): records -> rows, with no model.
TaskFn = Callable[[TaskContext, dict[str, Any]], Records]


@dataclass(frozen=True)
class TaskPlaces:
    """Where a task's inputs resolve: the evaluated data set's name, --data-root, CKPT_DIR."""

    dataset: str
    data_root: Path | None
    ckpt_dir: Path | None


# (params, places) -> the typed inputs the task reads besides the evaluated data, by name; the
# runner fingerprints their files (benchmark.fingerprint) into the unit's key and the task body
# loads them with `ctx.input(name)`.
InputsFn = Callable[[dict[str, Any], TaskPlaces], dict[str, InputRequest]]

# (params, number of evaluated images) -> the axis a sample-decomposable task splits along.
AxisFn = Callable[[dict[str, Any], int], Axis]


@dataclass(frozen=True)
class TaskDef:
    """A registered task: its measurement `fn`, parameter schema (`benchmark.params`), version
    (bump when its numbers change), the input files it reads (`inputs`), which key its
    stored results with the parameters, and for a sample-decomposable task the `axis` its
    units may be split along (`--shard-size`). Its metrics are registered apart (`reduce`)."""

    name: str
    fn: TaskFn
    params: type
    version: int
    description: str
    inputs: InputsFn | None = None
    axis: AxisFn | None = None

    def measure(self, ctx: TaskContext, params: dict[str, Any]) -> Records:
        """Declare the task's inputs to the context and measure: the unit's (or shard's)
        per-sample records."""
        places = TaskPlaces(ctx.data.name, ctx.data_root, ctx.ckpt_dir)
        ctx.requests = {} if self.inputs is None else self.inputs(params, places)
        return self.fn(ctx, params)

    def run(self, ctx: TaskContext, params: dict[str, Any],
            reducing: Callable[[], object] | None = None) -> tuple[Records, list[Metric]]:
        """Declare the task's inputs to the context, measure, then reduce (after telling
        `reducing`, e.g. a progress bar, that the model's work is done): the unit's records and
        its metrics."""
        records = self.measure(ctx, params)
        if reducing is not None:
            reducing()
        return records, self.reduce(records, params, ctx.seed)

    def reduce(self, records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
        """The task's metric rows from its records (every metric function of its type)."""
        return reduce_records(self.name, records, params, seed)

    @property
    def defaults(self) -> dict[str, Any]:
        """Every parameter with its default value."""
        return schema_defaults(self.params)


TASKS = registry("task")


def register_task(name: str, *, params: type = NoParams, version: int = 1,
                  inputs: InputsFn | None = None, axis: AxisFn | None = None
                  ) -> Callable[[TaskFn], TaskFn]:
    """Register `fn` as task `name` with its parameter schema (a frozen dataclass, see
    `benchmark.params`); its docstring's first line is the description. Its metrics are
    registered with `benchmark.reductions.register_metric`. A task given an `axis` measures
    only `ctx.part(...)` of it when the runner splits it into shards."""

    def wrap(fn: TaskFn) -> TaskFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        description = doc[0] if doc else ""
        TASKS.add(name, TaskDef(name, fn, params, version, description, inputs, axis),
                  description)
        return fn

    return wrap


def get_task(name: str) -> TaskDef:
    """The task registered as `name`."""
    try:
        return TASKS.get(name)
    except UnknownName as exc:
        raise SuiteError(str(exc)) from None


def list_tasks(pattern: str = "*") -> list[TaskDef]:
    """Registered tasks whose names match a shell-style pattern, sorted by name."""
    return [entry.value for entry in sorted(TASKS.entries(pattern), key=lambda e: e.name)]


def resolve_params(task: TaskDef, params: dict[str, Any], where: str) -> dict[str, Any]:
    """`params` checked against the task's schema and completed with its defaults; a bad
    parameter is a SuiteError naming `where`, the parameter and what is allowed."""
    return validate(task.params, params, f"{where} (task {task.name!r})")
