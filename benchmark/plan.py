"""`rubench evaluate --dry-run`: the units a run would compute, and what they would cost.

Every checkpoint is loaded and keyed as a run would (so stored units show as stored). Each
pending task is then measured once per architecture on the images a run with `--limit
CALIBRATION_IMAGES` reads, counting the model's image passes (forward, and backward: gradient
passes) and its time on the run's device, and scaled to the run's size along the task's shard
axis (or by the number of images, for a task that runs whole). Attacks that stop early cost
less on a robust model than on the subset's; the estimate is the subset's rate.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.checkpoints import CheckpointRef, discover, make_ref
from benchmark.data import EvalData
from benchmark.errors import CheckpointError, RubenchError
from benchmark.runner import Driver, RunOptions, data_identity, prepare_data, shards
from benchmark.store import Store
from benchmark.suites import TaskSpec
from benchmark.tasks import TaskContext, TaskPlaces, get_task
from benchmark.worker import CheckpointJob, Worker, describe_error, resolve_device

CALIBRATION_IMAGES = 100  # images each task is measured on, per architecture


@dataclass(frozen=True)
class Cost:
    """A unit's estimated image passes (forward; backward = gradient passes) and seconds;
    `note` says why there is no estimate, where there is none."""

    forward: float = 0.0
    backward: float = 0.0
    seconds: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class PlannedUnit:
    """One (checkpoint, task) unit of the run: its shards, whether it is stored, its cost."""

    checkpoint: str
    task: str
    shards: int
    stored: bool
    cost: Cost | None  # None for a stored unit (nothing to compute)


@contextmanager
def counting(model: torch.nn.Module) -> Iterator[dict[str, int]]:
    """Count the images `model` is run forward on and backward through while the block runs."""
    counts = {"forward": 0, "backward": 0}

    def forward(_module: torch.nn.Module, _inputs: object, outputs: torch.Tensor) -> None:
        counts["forward"] += len(outputs)

    def backward(_module: torch.nn.Module, _grad_input: object,
                 grad_output: tuple[torch.Tensor, ...]) -> None:
        counts["backward"] += len(grad_output[0])

    hooks = [model.register_forward_hook(forward), model.register_full_backward_hook(backward)]
    try:
        yield counts
    finally:
        for hook in hooks:
            hook.remove()


def _scale(task: TaskSpec, full: int, sample: int) -> float:
    """How many times the sample's work the run's is, along the task's axis (or images)."""
    axis = get_task(task.task).axis
    if axis is None:
        return full / sample
    big, small = axis(task.params, full), axis(task.params, sample)
    return (big.length * big.images) / max(1, small.length * small.images)


def _inputs_missing(task: TaskSpec, places: TaskPlaces) -> str:
    """Why the task cannot be measured yet (its input files are made by the first run)."""
    declare = get_task(task.task).inputs
    if declare is None:
        return ""
    try:
        paths = [p for request in declare(task.params, places).values()
                 for p in request.paths(places)]
    except (OSError, ValueError, RubenchError) as exc:
        return f"not estimated: {exc}"
    missing = [str(p) for p in paths if not Path(p).exists()]
    return f"not estimated: {missing[0]} is made by the first run" if missing else ""


def _context(worker: Worker, ref: CheckpointRef, sample: EvalData) -> TaskContext:
    """A task context of `ref` on `sample`, shared by the tasks measured on it (their clean
    pass is counted once, as a run shares it)."""
    opts = worker.opts
    loaded, model = worker.model(ref)
    return TaskContext(model=model, data=sample, seed=opts.seed, device=worker.device,
                       batch_size=worker.batch_size, num_workers=opts.num_workers,
                       progress=False, meta=loaded.meta, data_root=opts.data_root,
                       ckpt_dir=opts.ckpt_dir, trust_checkpoints=opts.trust_checkpoints,
                       cache=worker.cache, precision=opts.precision)


def measure(ctx: TaskContext, task: TaskSpec, full: int) -> Cost:
    """The cost of `task` at the run's size (`full` images), from one run on `ctx.data`."""
    missing = _inputs_missing(task, TaskPlaces(ctx.data.name, ctx.data_root, ctx.ckpt_dir))
    if missing:
        return Cost(note=missing)
    start = time.perf_counter()
    try:
        with counting(ctx.model) as counts:
            torch.manual_seed(ctx.seed)
            get_task(task.task).measure(ctx, task.params)
    except Exception as exc:  # the estimate fails, not the plan
        return Cost(note=f"not estimated: {describe_error(exc).splitlines()[-1]}")
    seconds = time.perf_counter() - start
    factor = _scale(task, full, len(ctx.data))
    return Cost(counts["forward"] * factor, counts["backward"] * factor, seconds * factor)


def dry_run(opts: RunOptions) -> tuple[list[PlannedUnit], list[str]]:
    """Plan `opts`'s run without computing or storing anything (see the module docstring):
    its units, and the checkpoints that could not be planned, with why."""
    data = prepare_data(opts.suite, opts.data_root, opts.limit, opts.seed)
    data_id = data_identity(data, opts.suite, opts.limit, opts.seed)
    worker = Worker(opts, resolve_device(opts.device), data)
    # the run's data at --limit CALIBRATION_IMAGES: the images a run of that size reads
    sample = prepare_data(opts.suite, opts.data_root, min(len(data), CALIBRATION_IMAGES),
                          opts.seed)
    paths = discover(opts.ckpt_dir)
    if not paths:
        raise CheckpointError(f"{opts.ckpt_dir}: no checkpoint files found")
    planned: list[PlannedUnit] = []
    failed: list[str] = []
    measured: dict[tuple[str, str], Cost] = {}
    contexts: dict[str, TaskContext] = {}
    with tempfile.TemporaryDirectory() as scratch:
        stored = Path(opts.out_dir) / "results.sqlite"
        if stored.is_file():  # read a copy: a plan writes nothing, not even a migration
            shutil.copyfile(stored, Path(scratch) / "results.sqlite")
        store = Store(Path(scratch))
        driver = Driver(opts, store, data, data_id)
        for path in paths:
            try:
                ref = make_ref(path, opts.ckpt_dir, opts.cli_meta, opts.suite.model_defaults)
            except RubenchError as exc:
                failed.append(f"{path}: {exc}")
                continue
            prepared = worker.prepare(CheckpointJob(ref))
            if prepared.error is not None:
                failed.append(f"{ref.name}: {prepared.error}")
                continue
            pending = {task.name for task, _ in driver.pending(
                ref, driver.data_id_for(prepared.preprocessing))}
            variant = worker.data_for(prepared.preprocessing)
            arch = prepared.meta["arch"]
            for task in opts.suite.tasks:
                definition = get_task(task.task)
                axis = None if definition.axis is None else definition.axis(task.params,
                                                                            len(variant))
                parts = len(shards(axis, opts.shard_size, worker.batch_size))
                cost = None
                if task.name in pending:
                    if (arch, task.name) not in measured:
                        if arch not in contexts:
                            contexts[arch] = _context(worker, ref, sample if prepared
                                                      .preprocessing is None else sample
                                                      .with_preprocessing(
                                                          prepared.preprocessing))
                        measured[arch, task.name] = measure(contexts[arch], task,
                                                            len(variant))
                    cost = measured[arch, task.name]
                planned.append(PlannedUnit(ref.name, task.name, parts, task.name not in pending,
                                           cost))
        store.close()
    return planned, failed


def describe(planned: list[PlannedUnit], failed: list[str]) -> str:
    """The plan as a text table per unit, then its totals, the notes and the checkpoints that
    could not be planned."""
    lines = [f"{'checkpoint':<24} {'task':<18} {'shards':>6} {'stored':>6} "
             f"{'forward':>12} {'backward':>12} {'est. time':>10}"]
    total = Cost()
    notes = []
    for unit in planned:
        cost = unit.cost
        if cost is None or cost.note:
            if cost is not None:
                notes.append(f"{unit.checkpoint} / {unit.task}: {cost.note}")
            numbers = f"{'-':>12} {'-':>12} {'-':>10}"
        else:
            numbers = (f"{cost.forward:>12,.0f} {cost.backward:>12,.0f} "
                       f"{_duration(cost.seconds):>10}")
            total = Cost(total.forward + cost.forward, total.backward + cost.backward,
                         total.seconds + cost.seconds)
        lines.append(f"{unit.checkpoint:<24} {unit.task:<18} {unit.shards:>6} "
                     f"{'yes' if unit.stored else 'no':>6} {numbers}")
    pending = sum(not u.stored for u in planned)
    lines.append(f"\n{len(planned)} unit(s), {pending} to compute: {total.forward:,.0f} forward "
                 f"and {total.backward:,.0f} backward image passes, about "
                 f"{_duration(total.seconds)} on this device (divide by the workers of a "
                 "Ray run)")
    return "\n".join(lines + notes + [f"not planned: {reason}" for reason in failed])


def _duration(seconds: float) -> str:
    """E.g. '42 s', '3.5 min', '2.1 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
