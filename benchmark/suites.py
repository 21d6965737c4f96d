"""Suites: TOML files naming a data set, its default model preprocessing, run settings and tasks."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from benchmark import builtin_suites
from benchmark.checkpoints import check_meta
from benchmark.errors import CheckpointError, SuiteError
from benchmark.params import param, validate
from benchmark.tasks import get_task, resolve_params

_TOP_KEYS = {"name", "version", "description", "dataset", "model_defaults", "run", "tasks"}
_MODEL_KEYS = {"num_classes", "mean", "std", "input_size"}
TASK_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class DatasetParams:
    """[dataset]: the data set's `name`, the evaluated `split`, its folder `path` (absolute or
    under --data-root; default: the data set's own folder name), and `subset`: "robustbench"
    (RobustBench's 5,000 ImageNet val images, in its order) or a text file listing the images
    to evaluate, one relative path per line (absolute, or relative to the suite file's folder;
    image-folder data sets only; `--subset-file` overrides it)."""

    name: str = param("")
    split: str = param("test")
    path: str | None = param(None)
    subset: str | None = param(None)

    def __post_init__(self) -> None:
        if not self.name:
            raise SuiteError("missing required key 'name'")


@dataclass(frozen=True)
class RunParams:
    """[run] (and the flags that override it): the `seed`, the `batch_size`, and `limit`, a
    seeded class-stratified subset of that many images (0 = all)."""

    seed: int = param(0, ge=0, le=2**63 - 1)  # what torch.manual_seed takes
    batch_size: int = param(256, ge=1)
    limit: int = param(0, ge=0)


@dataclass(frozen=True)
class TaskSpec:
    """One task of a suite: its name in the results, the registered task it runs, its parameters."""

    name: str
    task: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Suite:
    """A parsed, validated suite (see benchmark/suites/*.toml for the format)."""

    name: str
    version: str
    description: str
    source: str
    dataset: dict[str, Any]
    model_defaults: dict[str, Any]
    run: dict[str, Any]
    tasks: tuple[TaskSpec, ...]

    def with_params(self, task_type: str, where: str, **params: Any) -> Suite:
        """The suite with `params` (from `where`, e.g. a command-line flag) overriding those of
        every task of type `task_type`, validated like the suite's own."""
        tasks = tuple(TaskSpec(t.name, t.task, resolve_params(
            get_task(t.task), {**t.params, **params}, f"{where} for [tasks.{t.name}]"))
            if t.task == task_type else t for t in self.tasks)
        return Suite(**{**self.__dict__, "tasks": tasks})

    def select(self, names: list[str]) -> Suite:
        """The suite restricted to the tasks named, in the suite's order."""
        known = [t.name for t in self.tasks]
        if not names:
            raise SuiteError(f"--tasks names no task; suite {self.name!r} has "
                             f"{', '.join(known)}")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SuiteError(f"{self.source}: no task(s) {', '.join(unknown)} in suite "
                             f"{self.name!r}; it has {', '.join(known)}")
        return Suite(**{**self.__dict__, "tasks": tuple(t for t in self.tasks if t.name in names)})


def load_suite(name_or_path: str) -> Suite:
    """Parse a built-in suite by name, or a user's suite file by path."""
    path = Path(name_or_path)
    if path.is_file():
        text, source = path.read_text(), str(path)
    elif name_or_path in builtin_suites():
        resource = resources.files("benchmark") / "suites" / f"{name_or_path}.toml"
        text, source = resource.read_text(), f"built-in suite {name_or_path}"
    elif path.suffix == ".toml":
        raise SuiteError(f"{path}: suite file not found")
    else:
        raise SuiteError(f"no suite {name_or_path!r}: not a file, and the built-in suites are "
                         f"{', '.join(builtin_suites())}")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{source}: invalid TOML: {exc}") from exc
    return parse_suite(raw, source)


def _check_keys(table: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise SuiteError(f"{where}: expected a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    return table


def parse_suite(raw: dict[str, Any], source: str) -> Suite:
    """Validate a suite's TOML tables; errors name the file and the offending key."""
    _check_keys(raw, _TOP_KEYS, source)
    for key in ("name", "version", "dataset", "tasks"):
        if key not in raw:
            raise SuiteError(f"{source}: missing required key {key!r}")
    for key in ("name", "version", "description"):
        if key in raw and not isinstance(raw[key], str | int | float):
            raise SuiteError(f"{source}: {key!r} must be a string, got {raw[key]!r}")
    dataset = validate(DatasetParams, raw["dataset"], f"{source} [dataset]")
    subset = dataset["subset"]
    if subset not in (None, "robustbench") and not Path(subset).expanduser().is_absolute() \
            and Path(source).is_file():  # a list beside the suite file that names it
        dataset["subset"] = str(Path(source).parent / subset)
    model_defaults = {}
    for key, value in _check_keys(raw.get("model_defaults", {}), _MODEL_KEYS,
                                  f"{source} [model_defaults]").items():
        try:
            model_defaults[key] = check_meta(key, value, f"{source} [model_defaults]")
        except CheckpointError as exc:
            raise SuiteError(str(exc)) from None
    run = validate(RunParams, raw.get("run", {}), f"{source} [run]")
    tasks = []
    for name, table in _check_keys(raw["tasks"], set(raw["tasks"]), f"{source} [tasks]").items():
        where = f"{source} [tasks.{name}]"
        if not TASK_NAME.fullmatch(name):
            raise SuiteError(f"{where}: a task name may hold letters, digits, '_' and '-' only "
                             "(it names the task's files in reports)")
        params = dict(_check_keys(table, set(table), where))
        task_type = params.pop("task", name)
        if not isinstance(task_type, str):
            raise SuiteError(f"{where}: 'task' must name a registered task, got {task_type!r}")
        try:
            task = get_task(task_type)
        except SuiteError as exc:
            raise SuiteError(f"{where}: {exc}") from None
        tasks.append(TaskSpec(name, task.name, resolve_params(task, params, where)))
    if not tasks:
        raise SuiteError(f"{source}: the suite names no tasks")
    return Suite(name=str(raw["name"]), version=str(raw["version"]),
                 description=str(raw.get("description", "")), source=source, dataset=dataset,
                 model_defaults=dict(model_defaults), run=run, tasks=tuple(tasks))
