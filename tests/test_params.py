"""Typed task parameters (benchmark.params) and suite validation at load time.

A suite with a bad value must stop with a SuiteError naming the file, the task and the
parameter before any checkpoint is loaded (exit 2) — never a traceback, whatever the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.cli import main
from benchmark.errors import SuiteError
from benchmark.params import param, validate
from benchmark.suites import load_suite, parse_suite
from benchmark.tasks import get_task, list_tasks


@dataclass(frozen=True)
class Example:
    count: int = param(3, ge=1)
    ratio: float = param(0.5, gt=0, le=1)
    flag: bool = param(False)
    mode: str = param("a", choices=("a", "b"))
    sizes: list[int] = param([1, 2], ge=0, nonempty=True, distinct=True)
    either: str | list[str] = param("all")
    table: dict[str, Any] = param({})

    def __post_init__(self) -> None:
        if self.flag and self.count > 5:
            raise SuiteError("flag needs count <= 5")


@pytest.mark.parametrize(("given", "message"), [
    ({"count": 0}, "'count' must be an integer >= 1; got 0"),
    ({"count": 2.0}, "'count' must be an integer >= 1; got 2.0"),
    ({"count": True}, "'count' must be an integer >= 1; got True"),
    ({"ratio": 0}, "'ratio' must be a number > 0 and <= 1; got 0"),
    ({"ratio": math.nan}, "'ratio' must be a number > 0 and <= 1; got nan"),
    ({"ratio": math.inf}, "'ratio' must be a number"),
    ({"ratio": "0.5"}, "'ratio' must be a number"),
    ({"flag": 1}, "'flag' must be true or false; got 1"),
    ({"mode": "c"}, "'mode' must be one of 'a', 'b'; got 'c'"),
    ({"sizes": []}, "'sizes' must be a non-empty list of distinct integers >= 0"),
    ({"sizes": [1, 1]}, "distinct"),
    ({"sizes": [1, -1]}, "integers >= 0"),
    ({"sizes": 3}, "'sizes' must be a non-empty list"),
    ({"either": 3}, "'either' must be a string or a list of strings; got 3"),
    ({"either": ["x", 3]}, "'either' must be a string or a list of strings"),
    ({"table": []}, "'table' must be a table"),
    ({"flag": True, "count": 9}, "flag needs count <= 5"),
    ({"colour": 1}, r"unknown parameter\(s\) colour \(allowed: count, either, flag, mode, "),
])
def test_bad_values_name_the_place_the_parameter_and_what_is_allowed(given, message):
    with pytest.raises(SuiteError, match=r"^suite\.toml \[tasks\.x\]: .*" + message):
        validate(Example, given, "suite.toml [tasks.x]")


def test_good_values_come_back_as_given_with_the_defaults():
    got = validate(Example, {"count": 2, "ratio": 1, "either": ["x"]}, "here")
    assert got == {"count": 2, "ratio": 1, "flag": False, "mode": "a", "sizes": [1, 2],
                   "either": ["x"], "table": {}}
    assert isinstance(got["ratio"], int)  # not converted: results keyed by it stay keyed alike
    got["sizes"].append(3)
    assert validate(Example, {}, "here")["sizes"] == [1, 2]  # defaults are not shared


def test_every_builtin_suite_validates():
    for name in ("digits", "cifar10", "cifar100", "tinyimagenet", "imagenet"):
        assert load_suite(name).tasks


# ------------------------------------------------------------------ fuzzing suite files

SCALARS = st.one_of(st.integers(-10**6, 10**6), st.integers(), st.floats(allow_infinity=True),
                    st.booleans(), st.text(max_size=12),
                    st.sampled_from(["", "all", "l2", "linf", "pixel", "mean", "none", "ce"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
TASKS = sorted(task.name for task in list_tasks())


@st.composite
def suites(draw) -> dict[str, Any]:
    """A suite whose tables hold fuzzed values: task parameters, [run], [dataset],
    [model_defaults], and sometimes a wrong key."""
    tasks = {}
    for _ in range(draw(st.integers(1, 3))):
        task = draw(st.sampled_from(TASKS))
        names = sorted(get_task(task).defaults) or ["anything"]
        keys = draw(st.lists(st.sampled_from([*names, "not_a_param"]), max_size=3))
        tasks[f"{task}_{len(tasks)}"] = {"task": task, **{k: draw(VALUES) for k in keys}}
    raw = {"name": "fuzz", "version": "1", "dataset": {"name": "digits"}, "tasks": tasks}
    section = draw(st.sampled_from(["", "run", "dataset", "model_defaults"]))
    if section:
        key = draw(st.sampled_from({
            "run": ["seed", "batch_size", "limit"], "dataset": ["name", "split", "path"],
            "model_defaults": ["num_classes", "mean", "std", "input_size"]}[section]))
        raw[section] = {**raw.get(section, {}), key: draw(VALUES)}
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suites())
def test_fuzzed_suites_load_or_fail_with_a_suite_error(raw):
    try:
        suite = parse_suite(raw, "fuzz.toml")
    except SuiteError as exc:
        assert str(exc).startswith("fuzz.toml")
        return
    for task in suite.tasks:  # what loads is valid, and stays valid when validated again
        definition = get_task(task.task)
        assert validate(definition.params, task.params, "again") == task.params


def test_a_bad_suite_exits_2_before_any_checkpoint_is_loaded(tmp_path, capsys, monkeypatch):
    """The README's promise: unusable input exits 2, and nothing is loaded or written."""
    import benchmark.worker as worker

    def never(*args, **kwargs):
        raise AssertionError("a checkpoint was loaded")

    monkeypatch.setattr(worker, "load_model", never)
    (tmp_path / "zoo").mkdir()
    torch.save({}, tmp_path / "zoo" / "m.pth")
    for body, message in [
        ('[tasks.fgsm]\neps = "oops"\n', "[tasks.fgsm] (task 'fgsm'): parameter 'eps' must be "
                                        "a non-empty list of distinct numbers >= 0; got 'oops'"),
        ('[tasks.pgd]\nsteps = 0\n', "parameter 'steps' must be an integer >= 1; got 0"),
        ('[tasks."occ.black"]\ntask = "occlusion"\n', "a task name may hold letters"),
        ('[run]\nlimit = -5\n[tasks.clean]\n', "[run]: parameter 'limit' must be an integer "
                                               ">= 0; got -5"),
        ('[run]\nseed = "zero"\n[tasks.clean]\n', "parameter 'seed' must be an integer"),
        ('[model_defaults]\nmean = [nan]\n[tasks.clean]\n', "bad value for 'mean'"),
    ]:
        suite = tmp_path / "s.toml"
        suite.write_text(f'name = "s"\nversion = "1"\n[dataset]\nname = "digits"\n{body}')
        code = main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--out",
                     str(tmp_path / "out"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"rubench: error: {suite}" in err and message in err
        assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--limit", "-5"], "'limit' must be an integer >= 0; got -5"),
    (["--seed", "-1"], "'seed' must be an integer >= 0 and <= 9.22337e+18; got -1"),
    (["--batch-size", "0"], "'batch_size' must be an integer >= 1; got 0"),
    (["--workers", "-1"], "--workers -1"),
    (["--ood", "mean=uniform", "--tasks", "ood"], "'mean' is reserved"),
])
def test_bad_flags_exit_2(tmp_path, capsys, flags, message):
    (tmp_path / "zoo").mkdir()
    code = main(["evaluate", str(tmp_path / "zoo"), "--suite", "digits", "--out",
                 str(tmp_path / "out"), "--no-progress", *flags])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--num-classes", "0"], "--num-classes"), (["--mean", "nan"], "--mean"),
    (["--std", "0"], "--std"), (["--input-size", "0"], "--input-size"),
])
def test_bad_model_flags_exit_2_before_any_checkpoint(tmp_path, capsys, monkeypatch, flags,
                                                      message):
    import benchmark.runner as runner

    monkeypatch.setattr(runner, "run", lambda opts: pytest.fail("the run started"))
    (tmp_path / "zoo").mkdir()
    code = main(["evaluate", str(tmp_path / "zoo"), "--suite", "digits", "--out",
                 str(tmp_path / "out"), "--no-progress", *flags])
    assert code == 2
    assert f"rubench: error: {message}: bad value" in capsys.readouterr().err


def test_numpy_integers_in_checkpoint_metadata_are_accepted():
    import numpy as np

    from benchmark.checkpoints import check_meta

    assert check_meta("num_classes", np.int64(10), "here") == 10
    assert check_meta("input_size", [np.int64(3), np.int64(32), np.int64(32)], "here") == [32, 32]
