"""The worker side of a run: plain, picklable jobs and the process that computes them.

The driver (`benchmark.runner`) plans a `CheckpointJob` per checkpoint (load it, check it, pick
its data) and a `UnitJob` per (checkpoint, task, shard); an executor (`benchmark.executors`)
hands them to a `Worker` in this process or in Ray's worker processes. A worker never writes
the store: it returns records, and the driver merges, reduces and commits them. It keeps what
the next job will likely need (the run's data, the last checkpoint's model and shared clean
pass) between jobs.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from benchmark.archs import list_archs
from benchmark.archs.timm_models import timm_eval_preprocessing
from benchmark.checkpoints import CheckpointRef, LoadedModel, load_model
from benchmark.data import EvalData, Preprocessing, decoder_name
from benchmark.errors import CheckpointError, DataError, RubenchError
from benchmark.inputs import InputCache
from benchmark.records import Records
from benchmark.suites import TaskSpec
from benchmark.tasks import TaskContext, get_task
from benchmark.tasks.registry import Shard, inference_model

if TYPE_CHECKING:
    from benchmark.runner import RunOptions

# `--batch-size auto`: the first batch size tried; out-of-memory errors halve it (`compute`)
AUTO_BATCH_SIZE = 1024


@dataclass(frozen=True)
class CheckpointJob:
    """Load and check one checkpoint: what the driver needs before it keys and plans units."""

    ref: CheckpointRef


@dataclass(frozen=True)
class Prepared:
    """A checkpoint as a worker found it: metadata, the data it is read with (`preprocessing`
    None: the run's) and what decodes its files, a warning `note`, the `--precision` guard's
    provenance; or an `error`."""

    ref: CheckpointRef
    meta: dict[str, Any] | None = None
    meta_sources: dict[str, str] | None = None
    preprocessing: Preprocessing | None = None
    note: str | None = None
    precision: dict[str, Any] | None = None
    decoder: str | None = None  # what decodes the data's image files (None: in memory)
    error: str | None = None


@dataclass(frozen=True)
class UnitJob:
    """Measure one task (or one `shard` of it) on one checkpoint, read with `preprocessing`
    (None: the run's data; `data_id` names the images); `scratch` is where a resumable task
    keeps partial progress."""

    ref: CheckpointRef
    task: TaskSpec
    digest: str
    preprocessing: Preprocessing | None
    data_id: str  # the identity of the images read with `preprocessing`
    shard: Shard | None = None
    scratch: Path | None = None


@dataclass(frozen=True)
class UnitOutcome:
    """A unit job's records, or its `error`; the batch size that fit and the device it ran on."""

    job: UnitJob
    records: Records | None
    error: str | None
    elapsed_s: float
    batch_size: int
    device: str


def first_batch_size(opts: RunOptions) -> int:
    """The batch size a run starts with: `--batch-size`, or with `auto` a large one that
    out-of-memory errors halve until it fits."""
    return AUTO_BATCH_SIZE if opts.auto_batch else opts.batch_size


def describe_error(exc: BaseException) -> str:
    """A RubenchError's message, else the traceback (a bug or a model's own failure)."""
    if isinstance(exc, RubenchError):
        return str(exc)
    return "".join(traceback.format_exception(exc)).strip()


# what cuDNN / cuBLAS say when they cannot allocate their workspace (a RuntimeError)
_ALLOCATION_FAILURES = ("CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an accelerator's out-of-memory error (then a smaller batch may fit)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in _ALLOCATION_FAILURES))


def for_device(model: torch.nn.Module, device: torch.device,
               channels_last: bool | None = None) -> torch.nn.Module:
    """`model` on `device`; convolutional models in channels_last memory format on CUDA
    (`channels_last` None), or as asked: tensor cores' layout, the same numbers."""
    model = model.to(device)
    wanted = device.type == "cuda" if channels_last is None else channels_last
    if wanted and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cpu` / `cuda[:N]` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise RubenchError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RubenchError("--device cuda was asked for, but torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise RubenchError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA "
                           "device(s)")
    return device


def precision_agreement(model: torch.nn.Module, data: EvalData, device: torch.device,
                        batch_size: int, precision: str) -> float:
    """Percent of the data's first batch whose top-1 prediction at `precision` is float32's."""
    images, _ = next(iter(data.batches(batch_size, device)))
    with torch.inference_mode():
        full = model(images).argmax(dim=1)
        reduced = inference_model(model, precision)(images).argmax(dim=1)
    return 100.0 * float((full == reduced).double().mean())


def precision_guard(model: torch.nn.Module, data: EvalData, path: Path, device: torch.device,
                    batch_size: int, opts: RunOptions) -> dict[str, Any]:
    """The provenance of a reduced `--precision` (its top-1 agreement with float32 on the
    first batch; {} at fp32), or a CheckpointError when the agreement is below
    `--min-agreement`."""
    if opts.precision == "fp32":
        return {}
    agreement = precision_agreement(model, data, device, batch_size, opts.precision)
    if agreement < opts.min_agreement:
        raise CheckpointError(
            f"{path}: --precision {opts.precision} agrees with float32 on {agreement:.2f} % "
            f"of the first batch's top-1 predictions, below --min-agreement "
            f"{opts.min_agreement:g} %: evaluate it in fp32 (or lower --min-agreement)")
    return {"precision": opts.precision, "precision_agreement": round(agreement, 4)}


def check_model(model: torch.nn.Module, data: EvalData, meta: dict[str, Any], path: Path,
                device: torch.device, allow_class_mismatch: bool = False) -> None:
    """Fail early, with a clear message, when the model cannot take this data's images."""
    channels, height, width = data.image_shape()
    if "input_size" in meta and list(meta["input_size"]) != [height, width]:
        raise CheckpointError(f"{path}: model input size {meta['input_size']} does not match the "
                              f"data's {height}x{width} images (set `input_size` in a sidecar "
                              "TOML if the model was trained at the data's size)")
    if len(meta["mean"]) != channels:
        raise CheckpointError(f"{path}: mean/std have {len(meta['mean'])} channels, the data "
                              f"has {channels}")
    probe = torch.zeros((1, channels, height, width), device=device)
    try:
        with torch.inference_mode():
            shape = tuple(model(probe).shape)
    except Exception as exc:  # the model's own code: any failure is this checkpoint's
        hint = ""
        if f"{meta['arch']}_64" in list_archs(f"{meta['arch']}_64")["rubench"]:
            hint = (f" For {height}x{width} inputs the Manifold-Mixup / PatchUp networks use a "
                    f"stride-2 stem: arch {meta['arch']}_64.")
        raise CheckpointError(f"{path}: forward pass on a {channels}x{height}x{width} image "
                              f"failed: {type(exc).__name__}: {exc}.{hint}") from exc
    if shape != (1, meta["num_classes"]):
        raise CheckpointError(f"{path}: model outputs shape {shape} for one image, expected "
                              f"(1, {meta['num_classes']}) logits")
    if meta["num_classes"] != data.num_classes and not allow_class_mismatch:
        raise CheckpointError(
            f"{path}: the model has {meta['num_classes']} classes, the data set "
            f"{data.name} {data.num_classes}: wrong suite or wrong checkpoint? (Labels index "
            "the first outputs; --allow-class-mismatch evaluates it anyway.)")


class Worker:
    """Computes jobs for one run (`opts`: the runner's RunOptions) on `device`, keeping the
    run's data and the last checkpoint's model and clean pass between jobs."""

    def __init__(self, opts: RunOptions, device: torch.device, data: EvalData) -> None:
        self.opts, self.device, self.data = opts, device, data
        self.variants: dict[Preprocessing, EvalData] = {}
        self.cache = InputCache()  # inputs shared by every checkpoint and task of the run
        self.loaded: tuple[str, LoadedModel, torch.nn.Module] | None = None
        self.contexts: dict[tuple[str, Preprocessing | None], TaskContext] = {}
        self.batch_size = first_batch_size(opts)

    def handle(self, job: CheckpointJob | UnitJob) -> Prepared | UnitOutcome:
        """Compute one job."""
        return self.prepare(job) if isinstance(job, CheckpointJob) else self.compute(job)

    def model(self, ref: CheckpointRef) -> tuple[LoadedModel, torch.nn.Module]:
        """`ref` loaded (once while its jobs follow each other) and on the device."""
        # by file and content: two copies of one file may have different sidecars (mean, std)
        key = f"{ref.path}:{ref.sha256}"
        if self.loaded is None or self.loaded[0] != key:
            self.loaded, self.contexts = None, {}  # free the last checkpoint first
            loaded = load_model(ref, trust=self.opts.trust_checkpoints)
            self.loaded = (key, loaded, for_device(loaded.model, self.device))
        return self.loaded[1], self.loaded[2]

    def data_for(self, preprocessing: Preprocessing | None) -> EvalData:
        """The run's data, or the same images read with `preprocessing` (built once)."""
        if preprocessing is None or preprocessing == self.data.preprocessing:
            return self.data
        if preprocessing not in self.variants:
            try:
                self.variants[preprocessing] = self.data.with_preprocessing(preprocessing)
            except ValueError as exc:
                raise DataError(str(exc)) from exc
        return self.variants[preprocessing]

    def prepare(self, job: CheckpointJob) -> Prepared:
        """Load `job`'s checkpoint, choose its data, check the model takes it, run the
        precision guard (its batch halved while it does not fit): a `Prepared`, with an error
        instead where any of it fails."""
        ref = job.ref
        try:
            loaded, model = self.model(ref)
            preprocessing, note = self.preprocessing(loaded)
            data = self.data_for(preprocessing)
            check_model(model, data, loaded.meta, ref.path, self.device,
                        self.opts.allow_class_mismatch)
            while True:
                try:
                    precision = precision_guard(model, data, ref.path, self.device,
                                                self.batch_size, self.opts)
                    break
                except Exception as exc:
                    if not (is_out_of_memory(exc) and self.batch_size > 1):
                        raise
                self.out_of_memory()
        except Exception as exc:  # the checkpoint's or its model code's failure is its own
            return Prepared(ref, error=describe_error(exc))
        return Prepared(ref, loaded.meta, loaded.meta_sources, preprocessing, note, precision,
                        decoder_name(data, self.device))

    def preprocessing(self, loaded: LoadedModel) -> tuple[Preprocessing | None, str | None]:
        """(preprocessing, note): timm's evaluation preprocessing for a timm architecture on
        data read from image files (None: the run's); the note says why timm's could not be
        applied, where it could not."""
        timm = loaded.meta.get("timm_preprocessing")
        if self.data.preprocessing is None or timm is None:
            return None, None
        try:
            preprocessing, note = timm_eval_preprocessing(timm, loaded.meta["input_size"])
        except ValueError as exc:
            raise CheckpointError(f"{loaded.meta['arch']}: {exc}") from exc
        if preprocessing is None:
            return None, (f"{loaded.meta['arch']}: {note}; evaluated with the suite's "
                          f"{self.data.preprocessing.describe()}, so its numbers may differ "
                          "from timm's")
        return (None if preprocessing == self.data.preprocessing else preprocessing), None

    def context(self, job: UnitJob) -> TaskContext:
        """The task context of `job`'s checkpoint and data (its clean pass shared by the
        checkpoint's tasks)."""
        loaded, model = self.model(job.ref)
        key = (f"{job.ref.path}:{job.ref.sha256}", job.preprocessing)
        if key not in self.contexts:
            opts = self.opts
            self.contexts[key] = TaskContext(
                model=model, data=self.data_for(job.preprocessing), seed=opts.seed,
                device=self.device, batch_size=self.batch_size, num_workers=opts.num_workers,
                progress=opts.progress, meta=loaded.meta, data_root=opts.data_root,
                ckpt_dir=opts.ckpt_dir, trust_checkpoints=opts.trust_checkpoints,
                data_id=job.data_id, cache=self.cache, precision=opts.precision)
        return self.contexts[key]

    def compute(self, job: UnitJob) -> UnitOutcome:
        """Measure `job`: its records, or its error. A batch that does not fit the device's
        memory halves the batch size and measures the unit again; the size that fit is kept
        for the next units (this checkpoint's and the next ones') and reported."""
        start = time.perf_counter()
        try:
            ctx = self.context(job)
        except RubenchError as exc:
            return UnitOutcome(job, None, describe_error(exc), 0.0, self.batch_size,
                               self.device.type)
        ctx.scratch, ctx.shard = job.scratch, job.shard
        while True:
            try:
                torch.manual_seed(self.opts.seed)
                records = get_task(job.task.task).measure(ctx, job.task.params)
                error = None
            except Exception as exc:  # the task's or the model's failure is this unit's
                if not (is_out_of_memory(exc) and ctx.batch_size > 1):
                    records, error = None, describe_error(exc)
                    break
            else:
                break
            self.out_of_memory()  # outside the handler: its traceback no longer holds memory
        return UnitOutcome(job, records, error, time.perf_counter() - start, ctx.batch_size,
                           self.device.type)

    def out_of_memory(self) -> None:
        """Halve the batch size of this and every later unit; free cached device memory."""
        self.batch_size = max(1, self.batch_size // 2)
        for ctx in self.contexts.values():
            ctx.batch_size = self.batch_size
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
