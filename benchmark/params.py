"""Typed task parameters: each task declares a frozen dataclass whose annotations give each
parameter's type and whose `param(...)` fields give its allowed values (ranges, choices).

A suite is checked against these schemas when it loads, so a mistyped or out-of-range value
stops a run with a message naming the suite, the task and the parameter before any checkpoint
is loaded. Cross-parameter rules live in the schema's `__post_init__` (raising `SuiteError`).
"""

from __future__ import annotations

import copy
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

from benchmark.errors import SuiteError

NO_SPLIT = "none"  # the value of a held-out-split parameter that asks for none


@dataclass(frozen=True)
class Rule:
    """What a parameter's values may be beyond their type: numeric bounds and choices apply to
    the scalars (a list's items too); `nonempty` and `distinct` to lists and tables."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None
    nonempty: bool = False
    distinct: bool = False


@dataclass(frozen=True)
class NoParams:
    """The schema of a task without parameters."""


def param(default: Any, **rule: Any) -> Any:
    """A schema field with its default and its `Rule` (keywords ge, gt, le, choices, ...)."""
    metadata = {"rule": Rule(**{k: tuple(v) if k == "choices" else v for k, v in rule.items()})}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def defaults(schema: type) -> dict[str, Any]:
    """Every parameter of `schema` with its default value."""
    out = {}
    for f in fields(schema):
        out[f.name] = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
    return out


def _bounds(rule: Rule) -> str:
    parts = [f">= {rule.ge:g}" if rule.ge is not None else "",
             f"> {rule.gt:g}" if rule.gt is not None else "",
             f"<= {rule.le:g}" if rule.le is not None else ""]
    return " and ".join(p for p in parts if p)


def describe(tp: Any, rule: Rule, plural: bool = False) -> str:
    """What a value of type `tp` under `rule` must be, in words."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if rule.choices is not None and tp in (str, int, float):
        listed = ", ".join(repr(c) for c in rule.choices)
        return f"values among {listed}" if plural else f"one of {listed}"
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe(a, rule, plural) for a in args if a is not type(None))
    if origin is list:
        what = "a non-empty list" if rule.nonempty else "a list"
        distinct = " of distinct" if rule.distinct else " of"
        return f"{what}{distinct} {describe(args[0], rule, plural=True)}"
    if origin is dict:
        return "a table" + (" with at least one entry" if rule.nonempty else "")
    names = {bool: ("true or false", "true or false"), int: ("an integer", "integers"),
             float: ("a number", "numbers"), str: ("a string", "strings")}
    if tp in names:
        bounds = _bounds(rule) if tp in (int, float) else ""
        return names[tp][plural] + (f" {bounds}" if bounds else "")
    return "any value"


def _is_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _distinct(values: list[Any]) -> bool:
    """No value twice (numerically: 1 and 1.0 are the same value)."""
    try:
        return len(set(values)) == len(values)
    except TypeError:  # unhashable items (tables, lists): compare their text
        return len({repr(v) for v in values}) == len(values)


def _fits(value: Any, tp: Any, rule: Rule) -> bool:
    """Whether `value` is of type `tp` and obeys `rule`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, a, rule) for a in args)
    if origin is list:
        if not isinstance(value, list) or (rule.nonempty and not value):
            return False
        if rule.distinct and not _distinct(value):
            return False
        return all(_fits(v, args[0], rule) for v in value)
    if origin is dict:
        if not isinstance(value, dict) or (rule.nonempty and not value):
            return False
        return all(isinstance(k, str) and _fits(v, args[1], Rule()) for k, v in value.items())
    if tp is bool:
        return isinstance(value, bool)
    if tp is str:
        return isinstance(value, str) and (rule.choices is None or value in rule.choices)
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = _is_number(value)
    else:
        return isinstance(value, tp)
    if not ok or (rule.choices is not None and value not in rule.choices):
        return False
    return ((rule.ge is None or value >= rule.ge) and (rule.gt is None or value > rule.gt)
            and (rule.le is None or value <= rule.le))


def validate(schema: type, given: dict[str, Any], where: str) -> dict[str, Any]:
    """`given` checked against `schema` and completed with its defaults.

    Raises SuiteError naming `where` and the parameter, and saying what is allowed. The values
    come back as given (no conversion), so results keyed by them stay keyed the same.
    """
    if not is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a parameter schema")
    if not isinstance(given, dict):
        raise SuiteError(f"{where}: expected a table of parameters, got {given!r}")
    known = {f.name: f for f in fields(schema)}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SuiteError(f"{where}: unknown parameter(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(sorted(known)) or 'none'})")
    hints = typing.get_type_hints(schema)
    for name, value in given.items():
        rule = known[name].metadata.get("rule", Rule())
        if not _fits(value, hints[name], rule):
            raise SuiteError(f"{where}: parameter {name!r} must be "
                             f"{describe(hints[name], rule)}; got {value!r}")
    try:
        schema(**given)  # cross-parameter rules in __post_init__
    except SuiteError as exc:
        raise SuiteError(f"{where}: {exc}") from None
    return {**defaults(schema), **copy.deepcopy(given)}
