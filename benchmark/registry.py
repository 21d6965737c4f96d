"""One registry mechanism for every extension point: tasks, architectures, attacks,
corruptions, OOD scorers and metrics.

Adding one is a new module plus its registration, e.g.::

    from benchmark.registry import registry

    @registry("scorer").register("my_score", description="...")
    def my_score(logits): ...

`rubench list 'PATTERN'` lists the entries of every kind whose names match a shell-style pattern.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

KINDS = ("task", "arch", "attack", "corruption", "scorer", "metric")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered extension: its kind, name, the object itself, a one-line description and
    kind-specific facts (a corruption's category, whether a released set holds it, ...)."""

    kind: str
    name: str
    value: T
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class UnknownName(LookupError):
    """A name no entry of the registry has; the message lists close names."""


class Registry(Generic[T]):
    """The entries of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, value: T, description: str = "", **info: Any) -> T:
        """Register `value` as `name`; a second registration of a name is an error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if not description:
            doc = (getattr(value, "__doc__", None) or "").strip().splitlines()
            description = doc[0] if doc else ""
        self._entries[name] = Entry(self.kind, name, value, description, dict(info))
        return value

    def register(self, name: str, description: str = "", **info: Any) -> Callable[[T], T]:
        """Decorator form of `add`."""
        def wrap(value: T) -> T:
            return self.add(name, value, description, **info)

        return wrap

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry[T]:
        """The entry `name`, or UnknownName with a did-you-mean hint."""
        if name not in self._entries:
            raise UnknownName(f"unknown {self.kind} {name!r}{self.hint(name)}; known: "
                              f"{', '.join(self._entries)}")
        return self._entries[name]

    def get(self, name: str) -> T:
        """The object registered as `name`."""
        return self.entry(name).value

    def hint(self, name: str, extra: list[str] | None = None) -> str:
        """' (did you mean ...?)' for close or case-insensitively equal names, else ''."""
        known = [*self._entries, *(extra or [])]
        lower = {k.lower(): k for k in known}
        close = [lower[name.lower()]] if name.lower() in lower else [
            lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3,
                                                        cutoff=0.6)]
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, in registration order."""
        return [name for name in self._entries if fnmatch.fnmatchcase(name, pattern)]

    def entries(self, pattern: str = "*") -> list[Entry[T]]:
        """Entries whose names match a shell-style pattern, in registration order."""
        return [self._entries[name] for name in self.names(pattern)]


_REGISTRIES: dict[str, Registry[Any]] = {kind: Registry(kind) for kind in KINDS}


def registry(kind: str) -> Registry[Any]:
    """The registry of one extension kind (see KINDS)."""
    if kind not in _REGISTRIES:
        raise ValueError(f"unknown extension kind {kind!r}; kinds: {', '.join(KINDS)}")
    return _REGISTRIES[kind]


def find(pattern: str = "*") -> dict[str, list[Entry[Any]]]:
    """Every kind's entries matching a shell-style pattern (kinds with none included)."""
    return {kind: _REGISTRIES[kind].entries(pattern) for kind in KINDS}


def load_plugin(spec: str) -> None:
    """Import a module that registers extensions: a module name on the Python path, or a path
    to a `.py` file. Any failure is a RubenchError naming the plugin."""
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    from benchmark.errors import RubenchError

    path = Path(spec)
    try:
        if path.suffix == ".py":
            if not path.is_file():
                raise RubenchError(f"--plugin {spec}: file not found")
            name = f"rubench_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except RubenchError:
        raise
    except Exception as exc:  # the plugin's own code may fail in any way
        raise RubenchError(f"--plugin {spec}: {type(exc).__name__}: {exc}") from exc
