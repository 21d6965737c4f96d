"""Independent jobs (figures, unit reductions) on the machine's cores, results in job order.

Jobs are module-level functions with picklable arguments; each returns what it would inline,
so the output does not depend on the number of processes. Processes are forked (they inherit
registered plugins); where fork is unavailable, or with one usable core or job, jobs run inline.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

Job = tuple[Callable[..., Any], tuple[Any, ...]]


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_jobs(jobs: Sequence[Job], workers: int | None = None,
             done: Callable[[], object] | None = None) -> list[Any]:
    """`[fn(*args) for fn, args in jobs]`, spread over up to `workers` processes (default: the
    usable cores); `done()` is called as each job finishes (a progress bar); a job's exception
    is raised here."""
    workers = min(workers or usable_cores(), len(jobs))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        results = []
        for fn, args in jobs:
            results.append(fn(*args))
            if done is not None:
                done()
        return results
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(fn, *args) for fn, args in jobs]
        for _ in as_completed(futures):
            if done is not None:
                done()
        return [future.result() for future in futures]
