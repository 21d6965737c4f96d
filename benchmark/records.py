"""Per-sample records: what a task observed about each evaluated sample, under each condition.

A task measures; its metrics are reductions of its records (see `TaskDef.reduce`), so tables can
be recomputed from the store without the model, shards of a task merge by concatenating their
records, and two checkpoints evaluated on the same images can be compared image by image.

A `SampleTable` holds one condition's samples (e.g. eps=0.03, norm=linf) as equal-length columns;
`index` is each sample's position in the set it comes from (the evaluated data, or an OOD set).
Column names every task uses the same way: `correct` (top-1 hit), `correct_top{k}`, `pred`
(predicted class), `confidence` (top softmax probability), `norm` (minimal perturbation norm:
0 for a clean mistake, +inf when the attack failed), `score` (an OOD score). `facts` hold what a
unit measured that belongs to no sample (a fitted temperature, ODIN's tuned settings).

This module imports neither torch nor the measurement packages: reports read records through it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Condition = str | int | float
FORMAT = 1  # bump when the encoding changes incompatibly


@dataclass(frozen=True)
class SampleTable:
    """One condition's per-sample columns; `index` (int64) is always among them."""

    conditions: dict[str, Condition]
    columns: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        if "index" not in self.columns:
            raise ValueError("a sample table needs an `index` column")
        lengths = {name: len(values) for name, values in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"sample columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.columns["index"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def matches(self, conditions: dict[str, Condition]) -> bool:
        """Whether this table was measured under (at least) these conditions."""
        return all(self.conditions.get(k) == v for k, v in conditions.items())

    def take(self, rows: np.ndarray) -> SampleTable:
        """The same table restricted to `rows` (positions, or a boolean mask)."""
        return SampleTable(dict(self.conditions), {k: v[rows] for k, v in self.columns.items()})


@dataclass
class Records:
    """A unit's per-sample tables and its sample-free facts."""

    tables: list[SampleTable] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, conditions: dict[str, Condition] | None = None, **columns: Any) -> SampleTable:
        """Append a table of `columns` (array-likes, or tensors already on the CPU) measured
        under `conditions`; returns it."""
        table = SampleTable(dict(conditions or {}),
                            {name: np.asarray(values) for name, values in columns.items()})
        if any(t.conditions == table.conditions for t in self.tables):
            raise ValueError(f"records already hold a table for {table.conditions}")
        self.tables.append(table)
        return table

    def select(self, **conditions: Condition) -> list[SampleTable]:
        """Tables measured under these conditions (among others), in the order they were added."""
        return [t for t in self.tables if t.matches(conditions)]

    def one(self, **conditions: Condition) -> SampleTable:
        """The one table measured under exactly these conditions."""
        found = [t for t in self.tables if t.conditions == conditions]
        if len(found) != 1:
            raise KeyError(f"no sample table for conditions {conditions}")
        return found[0]

    def __iter__(self) -> Iterator[SampleTable]:
        return iter(self.tables)

    def encode(self) -> bytes:
        """Compact, pickle-free bytes: a compressed .npz with a JSON header."""
        header = {"format": FORMAT, "facts": self.facts,
                  "tables": [{"conditions": t.conditions, "columns": list(t.columns)}
                             for t in self.tables]}
        arrays = {f"t{i}/{name}": values for i, t in enumerate(self.tables)
                  for name, values in t.columns.items()}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                            **arrays)
        return buffer.getvalue()

    @classmethod
    def decode(cls, blob: bytes) -> Records:
        """Records from `encode`'s bytes (never unpickles)."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            header = json.loads(arrays["header"].tobytes().decode())
            if header.get("format") != FORMAT:
                raise ValueError(f"per-sample records of format {header.get('format')}, "
                                 f"this rubench reads format {FORMAT}")
            tables = [SampleTable(spec["conditions"],
                                  {name: arrays[f"t{i}/{name}"] for name in spec["columns"]})
                      for i, spec in enumerate(header["tables"])]
        return cls(tables, header["facts"])


def concat(parts: Iterable[Records]) -> Records:
    """Merge shards of one unit: tables with the same conditions are concatenated (rows in
    `index` order); facts must agree."""
    merged: dict[str, list[SampleTable]] = {}
    facts: dict[str, Any] = {}
    for part in parts:
        for name, value in part.facts.items():
            if name in facts and facts[name] != value:
                raise ValueError(f"shards disagree on fact {name!r}: {facts[name]} vs {value}")
            facts[name] = value
        for table in part:
            merged.setdefault(json.dumps(table.conditions, sort_keys=True), []).append(table)
    tables = []
    for pieces in merged.values():
        columns = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0].columns}
        order = np.argsort(columns["index"], kind="stable")
        tables.append(SampleTable(dict(pieces[0].conditions),
                                  {name: values[order] for name, values in columns.items()}))
    return Records(tables, facts)


def condition_key(conditions: dict[str, Any]) -> str:
    """A canonical text key of a conditions mapping, the same whether the values come from a
    task (eps 0.5, severity 3) or from a CSV read back (severity 3.0; empty cells as NaN):
    integral floats become integers, missing values are dropped, keys are sorted."""
    canonical = {}
    for name, value in conditions.items():
        if value is None or (isinstance(value, float) and value != value):
            continue
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        canonical[name] = value
    return json.dumps(canonical, sort_keys=True)
