"""The runner: the one place that loops over checkpoints x tasks, keys, isolates and stores work."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import benchmark
from benchmark.archs.timm_models import is_timm
from benchmark.checkpoints import CheckpointRef, discover, make_ref
from benchmark.data import EvalData, Preprocessing, stratified_subset
from benchmark.datasets import DATASETS, load_dataset
from benchmark.errors import CheckpointError, RubenchError, StoreError
from benchmark.executors import Executor, LocalExecutor, RayExecutor
from benchmark.fingerprint import fingerprint
from benchmark.inputs import InputRequest
from benchmark.readers import read_image_list
from benchmark.records import Records, concat
from benchmark.store import Store, StoredUnit
from benchmark.suites import Suite, TaskSpec
from benchmark.tasks import TaskPlaces, get_task
from benchmark.tasks.registry import Axis, Shard
from benchmark.worker import (
    CheckpointJob,
    Prepared,
    UnitJob,
    UnitOutcome,
    Worker,
    describe_error,
    first_batch_size,
    resolve_device,
)
from reports.files import write_atomic


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
    auto_batch: bool = False  # --batch-size auto: start large, halve on out-of-memory
    executor: str = "local"  # "local" (this process) or "ray" (`benchmark.executors`)
    ray_address: str | None = None  # None: a local Ray (or the one this process started)
    gpus_per_unit: float = 0.0  # Ray resources of one job
    shard_size: int = 0  # split sample-decomposable units into shards of ~N images (0: not)
    threads: int | None = None  # torch CPU threads (workers set it too)
    plugins: tuple[str, ...] = ()  # --plugin specs (Ray workers import them too)


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


def describe_normalization(meta: dict[str, Any], sources: dict[str, str]) -> str:
    """The mean / std a checkpoint is evaluated with and where they came from, in one line."""
    def numbers(values: list[float]) -> str:
        return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"

    where = sorted({sources.get("mean", "?"), sources.get("std", "?")})
    return f"mean={numbers(meta['mean'])} std={numbers(meta['std'])} ({' / '.join(where)})"


class Driver:
    """One run's driver: plans each checkpoint's units, hands jobs to the executor, merges
    shards, reduces and commits each unit as it completes (the only writer of the store)."""

    def __init__(self, opts: RunOptions, store: Store, data: EvalData, data_id: str) -> None:
        self.opts, self.store, self.data, self.data_id = opts, store, data, data_id
        suite = opts.suite
        self.provenance = {
            "suite": suite.name, "suite_version": suite.version, "seed": opts.seed,
            "dataset": suite.dataset["name"], "split": suite.dataset["split"],
            "n_data": len(data), "limit": opts.limit,
            "rubench_version": benchmark.__version__, "torch_version": torch.__version__,
            "git_hash": git_hash(),
            **({"subset": data.image_list.describe()} if data.image_list is not None else {}),
        }
        self.data_ids: dict[Preprocessing, str] = {}  # of the data read with timm's
        self.computed = self.reused = 0
        self.failures: list[Failure] = []
        self.keys: list[tuple[str, str, str, str]] = []  # (name, sha256, task, config hash)
        self.normalization: list[tuple[str, str, bool]] = []
        self.warnings: list[str] = []
        self.names_seen: dict[str, Path] = {}
        self.fingerprints: dict[tuple[Path, ...], str] = {}
        self.units: dict[tuple[str, str, str], _Unit] = {}  # (sha256, task, digest): open
        self.queue: list[Path] = []
        # whether the workers see --out (this machine's): they may keep partial progress there
        self.shared_out = opts.executor == "local" or opts.ray_address is None
        self.planned: dict[str, list[tuple[TaskSpec, str]]] = {}  # sha256: pending units
        self.executor: Executor | None = None
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

    def announce(self, job: CheckpointJob | UnitJob) -> None:
        """Name the job starting on the bar (local executor)."""
        if self.bar is not None:
            what = "loading" if isinstance(job, CheckpointJob) else job.task.name
            self.bar.set_postfix_str(f"{job.ref.name} / {what}")

    def fail(self, name: str, path: Path, sha256: str | None, task: str | None,
             error: BaseException | str) -> None:
        """Record a failed checkpoint (task None) or task; the next run retries it."""
        message = error if isinstance(error, str) else describe_error(error)
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

    def data_id_for(self, preprocessing: Preprocessing | None) -> str:
        """The identity of the run's images read with `preprocessing` (None: as the run's)."""
        if preprocessing is None:
            return self.data_id
        if preprocessing not in self.data_ids:
            self.data_ids[preprocessing] = data_identity(
                self.data.with_preprocessing(preprocessing), self.opts.suite, self.opts.limit,
                self.opts.seed)
        return self.data_ids[preprocessing]

    def pending(self, ref: CheckpointRef, data_id: str) -> list[tuple[TaskSpec, str]]:
        """Key `ref`'s units (in plan order, for results.csv) and return those not stored
        yet; the stored ones count as reused."""
        opts = self.opts
        units = [(task, config_hash(task, ref, data_id, opts.seed, self.inputs(task),
                                    opts.precision))
                 for task in opts.suite.tasks]
        self.keys.extend((ref.name, ref.sha256, task.name, digest) for task, digest in units)
        pending = [(task, digest) for task, digest in units
                   if not self.store.is_done(ref.sha256, task.name, digest)]
        self.reused += len(units) - len(pending)
        self.advance(len(units) - len(pending))
        return pending

    def next_checkpoint(self) -> None:
        """Submit the next checkpoint with work left to load and check (its units follow
        once it is prepared, so a local run evaluates one checkpoint after another)."""
        opts = self.opts
        while self.queue:
            path = self.queue.pop(0)
            try:
                ref = make_ref(path, opts.ckpt_dir, opts.cli_meta, opts.suite.model_defaults)
            except RubenchError as exc:
                self.fail(str(path), path, None, None, exc)
                self.advance(len(opts.suite.tasks))
                continue
            if ref.name in self.names_seen:
                self.fail(ref.name, path, ref.sha256, None,
                          f"{path}: its name {ref.name!r} is already taken by "
                          f"{self.names_seen[ref.name]}; give one of them a `name` in a "
                          "sidecar TOML")
                self.advance(len(opts.suite.tasks))
                continue
            self.names_seen[ref.name] = path
            # where timm's configuration or the file's own keys decide the data, load first
            if self.preprocessing_settled(ref):
                self.planned[ref.sha256] = self.pending(ref, self.data_id)
                if not self.planned[ref.sha256]:
                    continue
            self.executor.submit(CheckpointJob(ref))
            return

    def prepared(self, result: Prepared) -> None:
        """Plan the units of a loaded, checked checkpoint (or record why it failed)."""
        ref = result.ref
        planned = self.planned.pop(ref.sha256, None)  # keyed before loading, where settled
        if result.error is not None:
            self.fail(ref.name, ref.path, ref.sha256, None, result.error)
            self.advance(len(self.opts.suite.tasks) if planned is None else len(planned))
            return
        data_id = self.data_id_for(result.preprocessing)
        pending = planned if planned is not None else self.pending(ref, data_id)
        # a byte-identical file (same sha256) planned before: its units are stored or on the
        # way, under the same keys; they count as reused here
        again = [(task, digest) for task, digest in pending
                 if (ref.sha256, task.name, digest) in self.units
                 or self.store.is_done(ref.sha256, task.name, digest)]
        self.reused += len(again)
        self.advance(len(again))
        pending = [unit for unit in pending if unit not in again]
        if not pending:
            return
        self.store.save_checkpoint(checkpoint=ref.name, sha256=ref.sha256, path=str(ref.path),
                                   meta=result.meta, meta_sources=result.meta_sources)
        normalization = describe_normalization(result.meta, result.meta_sources)
        self.normalization.append((ref.name, normalization,
                                   result.meta_sources.get("mean") == "suite defaults"))
        if result.note is not None:
            self.warnings.append(f"{ref.name}: {result.note}")
        timm = result.meta.get("timm_preprocessing")
        data = self.data if result.preprocessing is None else \
            self.data.with_preprocessing(result.preprocessing)
        provenance = {**self.provenance, "arch": result.meta["arch"],
                      "normalization": normalization,
                      **({"timm_preprocessing": f"{timm['interpolation']}, crop "
                                                f"{timm['crop_pct']:g}"} if timm else {}),
                      **({"preprocessing": data.preprocessing.describe()}
                         if data.preprocessing is not None else {}),
                      **({"decoder": result.decoder} if result.decoder else {}),
                      **result.precision}
        opts = self.opts
        for task, digest in pending:
            scratch = self.store.out_dir / PARTIAL / f"{ref.sha256[:16]}-{digest}"
            definition = get_task(task.task)
            try:
                axis = None if definition.axis is None else definition.axis(task.params,
                                                                            len(data))
            except Exception as exc:  # a task's own (plugin) code: its unit fails alone
                self.fail(ref.name, ref.path, ref.sha256, task.name, exc)
                self.advance(1)
                continue
            unit = _Unit(ref, task, digest, {**provenance, "task_type": task.task},
                         shards(axis, opts.shard_size, first_batch_size(opts)), scratch)
            self.units[(ref.sha256, task.name, digest)] = unit
            for shard in unit.shards:
                if unit.resume(shard):  # a shard an earlier, interrupted run finished
                    continue
                unit.submitted += 1
                self.executor.submit(UnitJob(ref, task, digest, result.preprocessing, data_id,
                                             shard, scratch if self.shared_out else None))
            if unit.complete():  # every shard was stored already
                self.commit(unit)

    def outcome(self, result: UnitOutcome) -> None:
        """Keep one unit's (or shard's) records; commit the unit once all its shards are in.
        A failed shard fails its unit; its sibling shards are still kept for the re-run."""
        job = result.job
        key = (job.ref.sha256, job.task.name, job.digest)
        unit = self.units[key]
        unit.returned += 1
        if result.error is not None:
            if not unit.failed:
                self.fail(job.ref.name, job.ref.path, job.ref.sha256, job.task.name,
                          result.error)
                self.advance(1)
            unit.failed = True
        else:
            costs = (result.elapsed_s, result.batch_size, result.device)
            unit.add(job.shard, result.records, *costs)
            if len(unit.shards) > 1:
                unit.keep(job.shard, result.records, *costs)
        if unit.failed:
            if unit.returned == unit.submitted:
                del self.units[key]
        elif unit.complete():
            self.commit(unit)

    def commit(self, unit: _Unit) -> None:
        """Merge a unit's shards, reduce them to its metrics, store both in one transaction."""
        ref, task = unit.ref, unit.task
        del self.units[(ref.sha256, task.name, unit.digest)]
        opts = self.opts
        if self.bar is not None:
            self.bar.set_postfix_str(f"{ref.name} / {task.name}: metrics and intervals")
        try:
            records = unit.parts[0] if len(unit.parts) == 1 else concat(
                unit.parts[k] for k in sorted(unit.parts))
            metrics = get_task(task.task).reduce(records, task.params, opts.seed)
        except StoreError:
            raise
        except Exception as exc:  # the reduction's failure is this unit's
            self.fail(ref.name, ref.path, ref.sha256, task.name, exc)
            self.advance(1)
            return
        # the samples' identity pairs records image by image: the same images whatever
        # the preprocessing, so a timm checkpoint's records pair with the others'
        identity = _digest([self.data_id, self.inputs(task), opts.seed])[:16]
        provenance = {**unit.provenance, "device": unit.device,
                      "batch_size": min(unit.batch_sizes)}
        self.store.save(checkpoint=ref.name, sha256=ref.sha256, task=task.name,
                        config_hash=unit.digest, metrics=metrics, provenance=provenance,
                        elapsed_s=unit.elapsed_s, records=records,
                        unit=StoredUnit(task.task, task.params, opts.seed, identity))
        shutil.rmtree(unit.scratch, ignore_errors=True)  # stored: nothing to resume
        self.computed += 1
        self.advance(1, f"{ref.name} / {task.name}", unit.elapsed_s)

    def drive(self, paths: list[Path], executor: Executor) -> None:
        """Evaluate `paths` through `executor`: results are handled as they come."""
        self.queue, self.executor = list(paths), executor
        self.next_checkpoint()
        while executor.pending():
            result = executor.next()
            if isinstance(result, Prepared):
                self.prepared(result)
                self.next_checkpoint()
            else:
                self.outcome(result)


@dataclass
class _Unit:
    """A unit in the making: its shards, the records of those finished, and its costs."""

    ref: CheckpointRef
    task: TaskSpec
    digest: str
    provenance: dict[str, Any]
    shards: list[Shard | None]
    scratch: Path
    parts: dict[int, Records] = field(default_factory=dict)
    submitted: int = 0  # shard jobs handed to the executor (the others were kept before)
    returned: int = 0
    failed: bool = False
    elapsed_s: float = 0.0
    batch_sizes: set[int] = field(default_factory=set)
    device: str = ""

    def complete(self) -> bool:
        """Whether every shard's records are in."""
        return len(self.parts) == len(self.shards)

    def _file(self, shard: Shard, suffix: str = ".npz") -> Path:
        return self.scratch / f"shard-{shard.start}-{shard.stop}{suffix}"

    def add(self, shard: Shard | None, records: Records, elapsed_s: float, batch_size: int,
            device: str) -> None:
        """Take in one shard's records and what it cost."""
        self.parts[0 if shard is None else shard.part] = records
        self.elapsed_s += elapsed_s
        self.batch_sizes.add(batch_size)
        self.device = device

    def keep(self, shard: Shard, records: Records, elapsed_s: float, batch_size: int,
             device: str) -> None:
        """Save a finished shard under the unit's scratch folder, so a re-run after a kill
        of the driver computes only the shards still missing."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        blob = records.encode()
        costs = json.dumps({"elapsed_s": elapsed_s, "batch_size": batch_size,
                            "device": device}).encode()
        write_atomic(self._file(shard, ".json"), lambda path: path.write_bytes(costs))
        write_atomic(self._file(shard), lambda path: path.write_bytes(blob))

    def resume(self, shard: Shard | None) -> bool:
        """Take in the shard an earlier run kept, if it did (and it reads back whole)."""
        if shard is None or not self._file(shard).is_file():
            return False
        try:
            records = Records.decode(self._file(shard).read_bytes())
            costs = json.loads(self._file(shard, ".json").read_text())
            self.add(shard, records, float(costs["elapsed_s"]), int(costs["batch_size"]),
                     str(costs["device"]))
        except (OSError, ValueError, KeyError):
            return False
        return True


def shards(axis: Axis | None, shard_size: int, batch_size: int) -> list[Shard | None]:
    """A unit's shards along its task's `axis` of about `shard_size` images each (aligned
    axes: a multiple of the batch size); [None] (one unsplit unit) without an axis or size."""
    if axis is None or shard_size <= 0:
        return [None]
    if axis.aligned:
        step = -(-shard_size // batch_size) * batch_size
    else:
        step = max(1, shard_size // max(1, axis.images))
    if step >= axis.length:
        return [None]
    starts = range(0, axis.length, step)
    return [Shard(start, min(start + step, axis.length), part, len(starts))
            for part, start in enumerate(starts)]


def make_executor(opts: RunOptions, driver: Driver) -> Executor:
    """The run's executor: this process (`local`), or Ray's workers (`ray`)."""
    if opts.executor == "ray":
        return RayExecutor(opts, driver.data_id, opts.ray_address, opts.gpus_per_unit)
    worker = Worker(opts, resolve_device(opts.device), driver.data)
    return LocalExecutor(worker, driver.announce)


def run(opts: RunOptions) -> RunSummary:
    """Evaluate every checkpoint under `opts.ckpt_dir` on every task of the suite."""
    if opts.executor == "local":
        resolve_device(opts.device)  # a bad --device is refused before any work
    data = prepare_data(opts.suite, opts.data_root, opts.limit, opts.seed)
    store = Store(opts.out_dir)
    driver = Driver(opts, store, data, data_identity(data, opts.suite, opts.limit, opts.seed))
    executor = None
    try:
        paths = discover(opts.ckpt_dir)
        if not paths:
            raise CheckpointError(f"{opts.ckpt_dir}: no checkpoint files "
                                  "(.pt, .pth, .pth.tar, .ckpt, .safetensors) found")
        driver.total = len(paths) * len(opts.suite.tasks)
        driver.bar = tqdm(total=driver.total, desc="evaluate", unit="task",
                          disable=not opts.progress)
        executor = make_executor(opts, driver)
        driver.drive(paths, executor)
        driver.bar.close()
    finally:
        if executor is not None:
            executor.close()
        csv_path = store.export(driver.keys, everything=opts.results == "all")
        store.close()
    return RunSummary(driver.computed, driver.reused, tuple(driver.failures), csv_path,
                      tuple(driver.normalization), tuple(driver.warnings))
