"""Independent jobs on several processes: the same results, in job order, as run inline."""

from __future__ import annotations

import os

import pytest

from reports.pool import run_jobs


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _fail(x: int) -> int:
    raise ValueError(f"job {x} failed")


def test_jobs_on_two_processes_return_what_inline_returns_in_order():
    jobs = [(_square_and_pid, (x,)) for x in range(7)]
    ticks = []
    forked = run_jobs(jobs, workers=2, done=lambda: ticks.append(1))
    inline = run_jobs(jobs, workers=1)
    assert [value for value, _ in forked] == [value for value, _ in inline] == \
        [x * x for x in range(7)]
    assert len(ticks) == 7
    assert {pid for _, pid in inline} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in forked}  # really elsewhere


def test_a_failing_job_raises_here():
    with pytest.raises(ValueError, match="job 3 failed"):
        run_jobs([(_square_and_pid, (1,)), (_fail, (3,))], workers=2)
