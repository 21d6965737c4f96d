"""Executors: where the runner's jobs are computed, one at a time here or spread by Ray.

Both take jobs (`submit`) and give back results in the order they finish (`next`); the runner
alone writes the store. `local` computes the jobs in this process, in the order submitted.
`ray` submits each job as a Ray task (one CPU, `--gpus-per-unit` GPUs; a worker that dies has
its job retried by Ray) to a local Ray started here or to the cluster at `--ray-address`. Its
workers read the checkpoints and the data at the same paths as the driver (a shared file
system on a cluster) and keep the run's data and the last model between jobs.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import torch

from benchmark.errors import DataError, RubenchError
from benchmark.worker import (
    CheckpointJob,
    Prepared,
    UnitJob,
    UnitOutcome,
    Worker,
    describe_error,
)

RAY_RETRIES = 3  # times Ray runs a job again whose worker process died


class Executor(Protocol):
    """Computes submitted jobs; `next` returns a finished one's result."""

    def submit(self, job: CheckpointJob | UnitJob) -> None: ...

    def pending(self) -> int: ...

    def next(self) -> Prepared | UnitOutcome: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Jobs computed one after another in this process, in the order they were submitted;
    `announce` is told each job as it starts (the progress bar names it)."""

    def __init__(self, worker: Worker,
                 announce: Callable[[CheckpointJob | UnitJob], None] | None = None) -> None:
        self.worker, self.announce = worker, announce
        self.queue: deque[CheckpointJob | UnitJob] = deque()

    def submit(self, job: CheckpointJob | UnitJob) -> None:
        """Queue `job`."""
        self.queue.append(job)

    def pending(self) -> int:
        """Jobs submitted and not yet returned."""
        return len(self.queue)

    def next(self) -> Prepared | UnitOutcome:
        """Compute the oldest queued job."""
        job = self.queue.popleft()
        if self.announce is not None:
            self.announce(job)
        return self.worker.handle(job)

    def close(self) -> None:
        """Nothing to release."""


def failed(job: CheckpointJob | UnitJob, error: str) -> Prepared | UnitOutcome:
    """The result of a job that could not be computed at all."""
    if isinstance(job, CheckpointJob):
        return Prepared(job.ref, error=error)
    return UnitOutcome(job, None, error, 0.0, 0, "")


# One worker per Ray worker process and run (the run's token), reused by its next jobs.
_WORKER: tuple[str, Worker] | None = None


def _ray_job(opts: Any, data_id: str, token: str, job: CheckpointJob | UnitJob
             ) -> Prepared | UnitOutcome:
    """A job computed in a Ray worker process (the worker is built by its run's first job)."""
    global _WORKER
    if _WORKER is None or _WORKER[0] != token:
        _WORKER = None
        _WORKER = (token, _ray_worker(opts, data_id))
    return _WORKER[1].handle(job)


def _ray_worker(opts: Any, data_id: str) -> Worker:
    """The worker of this Ray process: the run's plugins and threads, its device, the run's
    data read here and checked to be the driver's."""
    import socket

    from benchmark.registry import load_plugin
    from benchmark.runner import data_identity, prepare_data, resolve_device

    for spec in opts.plugins:
        load_plugin(spec)
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    data = prepare_data(opts.suite, opts.data_root, opts.limit, opts.seed)
    if data_identity(data, opts.suite, opts.limit, opts.seed) != data_id:
        raise DataError(f"the Ray worker on {socket.gethostname()} reads other data than the "
                        f"driver at {opts.data_root or 'the suite paths'}: every worker must "
                        "see the same files at the same paths (a shared --data-root)")
    return Worker(opts, resolve_device(opts.device), data)


class RayExecutor:
    """Jobs as Ray tasks on a local Ray (started here when none is running and `address` is
    None) or on the cluster at `address` ('auto': the one this machine belongs to)."""

    def __init__(self, opts: Any, data_id: str, address: str | None = None,
                 gpus_per_unit: float = 0.0) -> None:
        try:
            import ray
        except ImportError:
            raise RubenchError("--executor ray needs Ray: pip install 'rubench[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RubenchError(f"--ray-address {address}: cannot join Ray: {exc}") from exc
        # max_calls=0: a worker process keeps its data and model for the next job (Ray's
        # default for GPU tasks is a new process per job)
        self.task = ray.remote(max_calls=0)(_ray_job).options(
            num_cpus=1, num_gpus=gpus_per_unit, max_retries=RAY_RETRIES, retry_exceptions=False)
        # workers show no bars (their output is not the terminal's) and write no scratch
        self.opts = ray.put(replace(opts, progress=False))
        self.data_id, self.token = data_id, uuid.uuid4().hex
        self.running: dict[Any, CheckpointJob | UnitJob] = {}

    def submit(self, job: CheckpointJob | UnitJob) -> None:
        """Start `job` as a Ray task."""
        self.running[self.task.remote(self.opts, self.data_id, self.token, job)] = job

    def pending(self) -> int:
        """Jobs submitted and not yet returned."""
        return len(self.running)

    def next(self) -> Prepared | UnitOutcome:
        """The result of the first job to finish; a job Ray could not compute (its worker
        died more often than Ray retries, or its worker could not start) as a failure."""
        ready, _ = self.ray.wait(list(self.running), num_returns=1)
        job = self.running.pop(ready[0])
        try:
            return self.ray.get(ready[0])
        except self.ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None)
            return failed(job, describe_error(cause) if isinstance(cause, BaseException)
                          else f"Ray could not run the job: {exc}")

    def close(self) -> None:
        """Shut down the local Ray this executor started."""
        for ref in self.running:
            self.ray.cancel(ref)
        if self.started:
            self.ray.shutdown()
