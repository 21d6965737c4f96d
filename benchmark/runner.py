"""The runner: the one place that loops over checkpoints x tasks, keys, isolates and stores work."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import benchmark
from benchmark.archs import list_archs
from benchmark.archs.timm_models import is_timm, timm_eval_preprocessing
from benchmark.checkpoints import CheckpointRef, LoadedModel, discover, load_model, make_ref
from benchmark.data import EvalData, Preprocessing, stratified_subset
from benchmark.datasets import DATASETS, load_dataset
from benchmark.errors import CheckpointError, DataError, RubenchError, StoreError
from benchmark.fingerprint import fingerprint
from benchmark.inputs import InputCache, InputRequest
from benchmark.readers import read_image_list
from benchmark.store import Store, StoredUnit
from benchmark.suites import Suite, TaskSpec
from benchmark.tasks import TaskContext, TaskPlaces, get_task
from benchmark.tasks.registry import inference_model


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs; CLI flags are already merged over the suite's values."""

    ckpt_dir: Path
    out_dir: Path
    suite: Suite
    data_root: Path | None = None
    device: str = "auto"
    batch_size: int = 256
    seed: int = 0
    limit: int = 0
    trust_checkpoints: bool = False
    cli_meta: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    progress: bool = True
    allow_class_mismatch: bool = False
    results: str = "all"  # results.csv: "all" current units of the store, or "run" only
    precision: str = "fp32"  # forward-only passes (`benchmark.tasks.registry.PRECISIONS`)
    min_agreement: float = 99.5  # percent top-1 agreement with fp32 a precision must reach


@dataclass(frozen=True)
class Failure:
    """A checkpoint (task None: it could not be loaded) or one of its tasks that failed."""

    checkpoint: str
    path: str
    task: str | None
    error: str


@dataclass(frozen=True)
class RunSummary:
    """What a run did: units computed and reused, failures, and where the results are."""

    computed: int
    reused: int
    failures: tuple[Failure, ...]
    results_csv: Path
    normalization: tuple[tuple[str, str, bool], ...] = ()  # (checkpoint, description, default?)
    warnings: tuple[str, ...] = ()  # about a checkpoint's numbers, for the terminal

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures


# Under --out: units' partial progress (`TaskContext.scratch`), kept until the unit is stored.
PARTIAL = "partial"


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


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def git_hash() -> str:
    """The rubench source checkout's commit (with `-dirty` if modified), or 'unknown'."""
    root = Path(benchmark.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "benchmark", "attacks", "corruptions", "ood", "reports"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.strip() + ("-dirty" if dirty.strip() else "")


def prepare_data(suite: Suite, data_root: Path | None, limit: int, seed: int) -> EvalData:
    """The suite's data set, restricted to the seeded stratified subset every task shares.
    With a subset list (`[dataset] subset`, `--subset-file`), the listed images in the list's
    order; a `limit` then takes its seeded stratified subset of them, still in that order."""
    spec = suite.dataset
    image_list = read_image_list(spec["subset"]) if spec.get("subset") else None
    data = load_dataset(spec["name"], spec["split"], spec["path"], data_root, image_list)
    return data.subset(stratified_subset(data.labels, limit, seed)) if limit else data


def data_identity(data: EvalData, suite: Suite, limit: int, seed: int) -> str:
    """A hash naming exactly which examples are evaluated (data set, split, subset, labels, the
    subset list's entries) and how (a preprocessing other than the data set's default), and the
    state of the files they come from (see `benchmark.fingerprint`). The default
    preprocessing adds nothing, so results stored before it was named keep their keys."""
    labels = hashlib.sha256(np.ascontiguousarray(data.labels).tobytes()).hexdigest()
    source = Path(data.source)
    identity = {"dataset": suite.dataset["name"], "split": suite.dataset["split"],
                "limit": limit, "seed": seed, "n": len(data), "labels": labels}
    info = DATASETS.get(suite.dataset["name"])
    if data.preprocessing is not None and (info is None or data.preprocessing
                                           != info.preprocessing):
        identity["preprocessing"] = data.preprocessing.describe()
    if data.image_list is not None:
        identity["subset"] = data.image_list.sha256
    if source.exists():
        identity["files"] = fingerprint([source])
    return _digest(identity)


def config_hash(task: TaskSpec, ref: CheckpointRef, data_id: str, seed: int,
                inputs: str | None = None, precision: str = "fp32") -> str:
    """Key of one unit's configuration: a change in any part re-runs it. `inputs` is the
    fingerprint of the files the task reads besides the evaluated data (OOD sets, surrogate);
    a `precision` other than fp32 keys it too (fp32 units keep the keys they always had)."""
    definition = get_task(task.task)
    key = {"task": task.task, "task_version": definition.version, "params": task.params,
           "seed": seed, "data": data_id,
           "external_meta": {key: value for key, value, _ in ref.external_meta}}
    if inputs is not None:  # tasks that read no extra files keep the keys they always had
        key["inputs"] = inputs
    if precision != "fp32":
        key["precision"] = precision
    return _digest(key)[:16]


def precision_agreement(model: torch.nn.Module, data: EvalData, device: torch.device,
                        batch_size: int, precision: str) -> float:
    """Percent of the data's first batch whose top-1 prediction at `precision` is float32's."""
    images, _ = next(iter(data.batches(batch_size, device)))
    with torch.inference_mode():
        full = model(images).argmax(dim=1)
        reduced = inference_model(model, precision)(images).argmax(dim=1)
    return 100.0 * float((full == reduced).double().mean())


def describe_normalization(meta: dict[str, Any], sources: dict[str, str]) -> str:
    """The mean / std a checkpoint is evaluated with and where they came from, in one line."""
    def numbers(values: list[float]) -> str:
        return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"

    where = sorted({sources.get("mean", "?"), sources.get("std", "?")})
    return f"mean={numbers(meta['mean'])} std={numbers(meta['std'])} ({' / '.join(where)})"


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RubenchError):
        return str(exc)
    return "".join(traceback.format_exception(exc)).strip()


class _Session:
    """One run's state: the store, the shared data, and what was computed, reused or failed."""

    def __init__(self, opts: RunOptions, store: Store, data: EvalData, data_id: str,
                 device: torch.device) -> None:
        self.opts, self.store, self.data, self.data_id, self.device = (
            opts, store, data, data_id, device)
        suite = opts.suite
        self.provenance = {
            "suite": suite.name, "suite_version": suite.version, "seed": opts.seed,
            "dataset": suite.dataset["name"], "split": suite.dataset["split"],
            "n_data": len(data), "limit": opts.limit, "device": device.type,
            "rubench_version": benchmark.__version__, "torch_version": torch.__version__,
            "git_hash": git_hash(),
            **({"subset": data.image_list.describe()} if data.image_list is not None else {}),
        }
        # the run's data read with a checkpoint's own preprocessing (timm's), built once each
        self.variants: dict[Preprocessing, tuple[EvalData, str]] = {}
        self.computed = self.reused = 0
        self.failures: list[Failure] = []
        self.keys: list[tuple[str, str, str, str]] = []  # (name, sha256, task, config hash)
        self.normalization: list[tuple[str, str, bool]] = []
        self.warnings: list[str] = []
        self.names_seen: dict[str, Path] = {}
        self.fingerprints: dict[tuple[Path, ...], str] = {}
        self.cache = InputCache()  # inputs shared by every checkpoint and task of the run
        self.bar: tqdm | None = None  # one step per (checkpoint, task), named as it runs
        self.done = self.total = 0

    def advance(self, steps: int, unit: str | None = None, seconds: float = 0.0) -> None:
        """Count finished (or skipped) units: on the bar, or one log line per computed unit
        when bars are off, so a CI log never sits silent for a whole suite."""
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
        if unit is not None and not self.opts.progress:
            print(f"[{self.done}/{self.total}] {unit}: {seconds:.2f} s", flush=True)

    def fail(self, name: str, path: Path, sha256: str | None, task: str | None,
             error: BaseException | str) -> None:
        """Record a failed checkpoint (task None) or task; the next run retries it."""
        message = error if isinstance(error, str) else _describe(error)
        self.failures.append(Failure(name, str(path), task, message))
        self.store.record_failure(checkpoint=name, path=str(path), sha256=sha256, task=task,
                                  error=message)

    def requests(self, task: TaskSpec) -> dict[str, InputRequest] | str:
        """The typed inputs `task` declares, or why they could not be declared (malformed
        parameters: the task itself then fails on them, with its message)."""
        declare = get_task(task.task).inputs
        if declare is None:
            return {}
        places = TaskPlaces(self.opts.suite.dataset["name"], self.opts.data_root,
                            self.opts.ckpt_dir)
        try:
            declared = declare(task.params, places)
        except (TypeError, ValueError, OSError, RubenchError) as exc:
            return f"undeclared: {exc}"
        return declared

    def inputs(self, task: TaskSpec) -> str | None:
        """Fingerprint of the files `task`'s inputs read besides the evaluated data, once per
        run; None for a task that declares no inputs."""
        if get_task(task.task).inputs is None:
            return None
        requests = self.requests(task)
        if isinstance(requests, str):
            return requests
        places = TaskPlaces(self.opts.suite.dataset["name"], self.opts.data_root,
                            self.opts.ckpt_dir)
        try:
            paths = tuple(p for request in requests.values() for p in request.paths(places))
        except (OSError, ValueError, RubenchError) as exc:
            return f"undeclared: {exc}"
        if not paths:  # nothing read from files: the key is the parameters'
            return None
        if paths not in self.fingerprints:
            self.fingerprints[paths] = fingerprint(paths)
        return self.fingerprints[paths]

    def preprocessing_settled(self, ref: CheckpointRef) -> bool:
        """Whether `ref`'s data is known before loading it: the data's images are used as
        stored, or the user named an architecture other than timm's (a timm one's
        configuration, and a checkpoint's own `arch` / `input_size`, are read when it loads)."""
        arch = ref.external().get("arch")
        return self.data.preprocessing is None or (arch is not None
                                                   and not is_timm(str(arch[0])))

    def data_for(self, loaded: LoadedModel | None) -> tuple[EvalData, str, str | None]:
        """(data, data identity, note) a checkpoint is evaluated on: the run's data, or for a
        timm architecture on data read from image files, the same images read with timm's
        evaluation preprocessing (built once per distinct preprocessing); the note says why
        timm's could not be applied, where it could not."""
        timm = loaded.meta.get("timm_preprocessing") if loaded is not None else None
        if self.data.preprocessing is None or timm is None:
            return self.data, self.data_id, None
        try:
            preprocessing, note = timm_eval_preprocessing(timm, loaded.meta["input_size"])
        except ValueError as exc:
            raise CheckpointError(f"{loaded.meta['arch']}: {exc}") from exc
        if preprocessing is None:
            return self.data, self.data_id, (
                f"{loaded.meta['arch']}: {note}; evaluated with the suite's "
                f"{self.data.preprocessing.describe()}, so its numbers may differ from timm's")
        if preprocessing == self.data.preprocessing:
            return self.data, self.data_id, None
        if preprocessing not in self.variants:
            try:
                data = self.data.with_preprocessing(preprocessing)
            except ValueError as exc:
                raise DataError(str(exc)) from exc
            self.variants[preprocessing] = (data, data_identity(
                data, self.opts.suite, self.opts.limit, self.opts.seed))
        return (*self.variants[preprocessing], None)

    def precision_guard(self, model: torch.nn.Module, data: EvalData, path: Path
                        ) -> dict[str, Any]:
        """The provenance of a reduced `--precision` (its top-1 agreement with float32 on the
        first batch), or a CheckpointError when the agreement is below `--min-agreement`."""
        opts = self.opts
        agreement = precision_agreement(model, data, self.device, opts.batch_size,
                                        opts.precision)
        if agreement < opts.min_agreement:
            raise CheckpointError(
                f"{path}: --precision {opts.precision} agrees with float32 on {agreement:.2f} % "
                f"of the first batch's top-1 predictions, below --min-agreement "
                f"{opts.min_agreement:g} %: evaluate it in fp32 (or lower --min-agreement)")
        return {"precision": opts.precision, "precision_agreement": round(agreement, 4)}

    def evaluate(self, path: Path) -> None:
        """Run the suite's pending tasks on one checkpoint, storing each as it finishes."""
        opts = self.opts
        try:
            ref = make_ref(path, opts.ckpt_dir, opts.cli_meta, opts.suite.model_defaults)
        except RubenchError as exc:
            self.fail(str(path), path, None, None, exc)
            return
        if ref.name in self.names_seen:
            self.fail(ref.name, path, ref.sha256, None,
                      f"{path}: its name {ref.name!r} is already taken by "
                      f"{self.names_seen[ref.name]}; give one of them a `name` in a sidecar TOML")
            return
        self.names_seen[ref.name] = path
        try:  # where timm's configuration or the file's own keys decide the data, load first
            loaded = None if self.preprocessing_settled(ref) else load_model(
                ref, trust=opts.trust_checkpoints)
            data, data_id, note = self.data_for(loaded)
        except RubenchError as exc:
            self.fail(ref.name, path, ref.sha256, None, exc)
            return
        units = [(task, config_hash(task, ref, data_id, opts.seed, self.inputs(task),
                                    opts.precision))
                 for task in opts.suite.tasks]
        self.keys.extend((ref.name, ref.sha256, task.name, digest) for task, digest in units)
        pending = [(task, digest) for task, digest in units
                   if not self.store.is_done(ref.sha256, task.name, digest)]
        self.reused += len(units) - len(pending)
        self.advance(len(units) - len(pending))
        if not pending:
            return
        try:
            loaded = loaded or load_model(ref, trust=opts.trust_checkpoints)
            model = loaded.model.to(self.device)
            check_model(model, data, loaded.meta, path, self.device,
                        opts.allow_class_mismatch)
            precision = {} if opts.precision == "fp32" else self.precision_guard(model, data,
                                                                                 path)
        except RubenchError as exc:
            self.fail(ref.name, path, ref.sha256, None, exc)
            self.advance(len(pending))
            return
        self.store.save_checkpoint(checkpoint=ref.name, sha256=ref.sha256, path=str(path),
                                   meta=loaded.meta, meta_sources=loaded.meta_sources)
        normalization = describe_normalization(loaded.meta, loaded.meta_sources)
        self.normalization.append((ref.name, normalization,
                                   loaded.meta_sources.get("mean") == "suite defaults"))
        timm = loaded.meta.get("timm_preprocessing")
        if note is not None:
            self.warnings.append(f"{ref.name}: {note}")
        ctx = TaskContext(model=model, data=data, seed=opts.seed, device=self.device,
                          batch_size=opts.batch_size, num_workers=opts.num_workers,
                          progress=opts.progress, meta=loaded.meta, data_root=opts.data_root,
                          ckpt_dir=opts.ckpt_dir, trust_checkpoints=opts.trust_checkpoints,
                          data_id=data_id, cache=self.cache, precision=opts.precision)
        for task, digest in pending:
            start = time.perf_counter()
            if self.bar is not None:
                self.bar.set_postfix_str(f"{ref.name} / {task.name}")
            provenance = {**self.provenance, "task_type": task.task, "arch": loaded.meta["arch"],
                          "normalization": normalization,
                          **({"timm_preprocessing": f"{timm['interpolation']}, crop "
                                                    f"{timm['crop_pct']:g}"} if timm else {}),
                          **({"preprocessing": data.preprocessing.describe()}
                             if data.preprocessing is not None else {}), **precision}
            # the samples' identity pairs records image by image: the same images whatever
            # the preprocessing, so a timm checkpoint's records pair with the others'
            identity = _digest([self.data_id, self.inputs(task), opts.seed])[:16]
            ctx.scratch = self.store.out_dir / PARTIAL / f"{ref.sha256[:16]}-{digest}"
            try:
                torch.manual_seed(opts.seed)
                reducing = None if self.bar is None else partial(
                    self.bar.set_postfix_str, f"{ref.name} / {task.name}: metrics and intervals")
                records, metrics = get_task(task.task).run(ctx, task.params, reducing)
                self.store.save(checkpoint=ref.name, sha256=ref.sha256, task=task.name,
                                config_hash=digest, metrics=metrics, provenance=provenance,
                                elapsed_s=time.perf_counter() - start, records=records,
                                unit=StoredUnit(task.task, task.params, opts.seed, identity))
                shutil.rmtree(ctx.scratch, ignore_errors=True)  # stored: nothing to resume
            except StoreError:  # the store itself failed: nothing more can be kept
                raise
            except Exception as exc:  # one task's failure must not stop the others
                self.fail(ref.name, path, ref.sha256, task.name, exc)
                self.advance(1)
                continue
            self.computed += 1
            self.advance(1, f"{ref.name} / {task.name}", time.perf_counter() - start)


def run(opts: RunOptions) -> RunSummary:
    """Evaluate every checkpoint under `opts.ckpt_dir` on every task of the suite."""
    device = resolve_device(opts.device)
    data = prepare_data(opts.suite, opts.data_root, opts.limit, opts.seed)
    store = Store(opts.out_dir)
    session = _Session(opts, store, data, data_identity(data, opts.suite, opts.limit, opts.seed),
                       device)
    try:
        paths = discover(opts.ckpt_dir)
        if not paths:
            raise CheckpointError(f"{opts.ckpt_dir}: no checkpoint files "
                                  "(.pt, .pth, .pth.tar, .ckpt, .safetensors) found")
        per_checkpoint = len(opts.suite.tasks)
        session.total = len(paths) * per_checkpoint
        session.bar = tqdm(total=session.total, desc="evaluate", unit="task",
                           disable=not opts.progress)
        for done, path in enumerate(paths, start=1):
            session.evaluate(path)
            session.advance(done * per_checkpoint - session.done)  # units it never ran
        session.bar.close()
    finally:
        csv_path = store.export(session.keys, everything=opts.results == "all")
        store.close()
    return RunSummary(session.computed, session.reused, tuple(session.failures), csv_path,
                      tuple(session.normalization), tuple(session.warnings))
