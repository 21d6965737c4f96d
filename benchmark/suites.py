"""Suites: TOML files naming a data set, its default model preprocessing, run settings and tasks."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from benchmark.errors import SuiteError
from benchmark.tasks import get_task, resolve_params

_TOP_KEYS = {"name", "version", "description", "dataset", "model_defaults", "run", "tasks"}
_DATASET_KEYS = {"name", "split", "path"}
_MODEL_KEYS = {"num_classes", "mean", "std", "input_size"}
_RUN_KEYS = {"seed", "batch_size", "limit"}


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

    def with_params(self, task_type: str, **params: Any) -> Suite:
        """The suite with `params` overriding those of every task of type `task_type`."""
        tasks = tuple(TaskSpec(t.name, t.task, {**t.params, **params}) if t.task == task_type
                      else t for t in self.tasks)
        return Suite(**{**self.__dict__, "tasks": tasks})

    def select(self, names: list[str]) -> Suite:
        """The suite restricted to the tasks named, in the suite's order."""
        known = [t.name for t in self.tasks]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SuiteError(f"{self.source}: no task(s) {', '.join(unknown)} in suite "
                             f"{self.name!r}; it has {', '.join(known)}")
        return Suite(**{**self.__dict__, "tasks": tuple(t for t in self.tasks if t.name in names)})


def builtin_suites() -> list[str]:
    """Names of the suites shipped inside the package."""
    folder = resources.files("benchmark") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


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
    dataset = _check_keys(raw["dataset"], _DATASET_KEYS, f"{source} [dataset]")
    if "name" not in dataset:
        raise SuiteError(f"{source} [dataset]: missing required key 'name'")
    dataset = {"split": "test", "path": None, **dataset}
    model_defaults = _check_keys(raw.get("model_defaults", {}), _MODEL_KEYS,
                                 f"{source} [model_defaults]")
    run = {"seed": 0, "batch_size": 256, "limit": 0,
           **_check_keys(raw.get("run", {}), _RUN_KEYS, f"{source} [run]")}
    tasks = []
    for name, table in _check_keys(raw["tasks"], set(raw["tasks"]), f"{source} [tasks]").items():
        params = dict(_check_keys(table, set(table), f"{source} [tasks.{name}]"))
        try:
            task = get_task(params.pop("task", name))
        except SuiteError as exc:
            raise SuiteError(f"{source} [tasks.{name}]: {exc}") from None
        tasks.append(TaskSpec(name, task.name,
                              resolve_params(task, params, f"{source} [tasks.{name}]")))
    if not tasks:
        raise SuiteError(f"{source}: the suite names no tasks")
    return Suite(name=str(raw["name"]), version=str(raw["version"]),
                 description=str(raw.get("description", "")), source=source, dataset=dataset,
                 model_defaults=dict(model_defaults), run=run, tasks=tuple(tasks))
