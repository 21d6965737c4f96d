"""Per-sample records: what a task observed about each evaluated sample, under each condition.

A task measures; its metrics are reductions of its records (see `TaskDef.reduce`), so tables can
be recomputed from the store without the model, shards of a task merge by concatenating their
records, and two checkpoints evaluated on the same images can be compared image by image.

A `SampleTable` holds one condition's samples (e.g. eps=0.03, norm=linf) as equal-length columns;
`index` is each sample's position in the set it comes from (the evaluated data, or an OOD set).
Column names every task uses the same way: `correct` (top-1 hit), `correct_top{k}`, `pred`
(predicted class), `confidence` (top softmax probability), `perturbation_norm` (minimal norm:
0 for a clean mistake, +inf when the attack failed), `score` (an OOD score). `facts` hold what a
unit measured that belongs to no sample (a fitted temperature, ODIN's tuned settings).

This module imports neither torch nor the measurement packages: reports read records through it.
"""

from __future__ import annotations

import io
import json
import zipfile
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

    def take(self, rows: np.ndarray) -> SampleTable:
        """The same table restricted to `rows` (positions, or a boolean mask)."""
        return SampleTable(dict(self.conditions), {k: v[rows] for k, v in self.columns.items()})


@dataclass
class Records:
    """A unit's per-sample tables and its sample-free facts."""

    tables: list[SampleTable] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, conditions: dict[str, Condition] | None = None, **columns: Any) -> SampleTable:
        """Append a table of `columns` (numeric or boolean array-likes, or tensors already on
        the CPU) measured under `conditions` (JSON scalars); returns it."""
        conditions = {name: _scalar(value, f"condition {name!r}")
                      for name, value in (conditions or {}).items()}
        arrays = {name: np.asarray(values) for name, values in columns.items()}
        for name, values in arrays.items():
            if values.dtype.kind not in "biuf":
                raise ValueError(f"sample column {name!r} holds {values.dtype} values; columns "
                                 "are numbers or booleans")
        clash = sorted(set(conditions) & set(arrays))
        if clash:
            raise ValueError(f"{', '.join(clash)}: both a condition and a column")
        table = SampleTable(conditions, arrays)
        if any(t.conditions == table.conditions for t in self.tables):
            raise ValueError(f"records already hold a table for {table.conditions}")
        self.tables.append(table)
        return table

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
        facts = {name: _fact(value, name) for name, value in self.facts.items()}
        header = {"format": FORMAT, "facts": facts,
                  "tables": [{"conditions": t.conditions, "columns": list(t.columns)}
                             for t in self.tables]}
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8),
                  **{f"t{i}/{name}": values for i, t in enumerate(self.tables)
                     for name, values in t.columns.items()}}
        buffer = io.BytesIO()
        # an .npz (np.load reads it) deflated at level 1: most of level 6's size, 3x faster
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name, values in arrays.items():
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(values),
                                              allow_pickle=False)
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
            value = _fact(value, name)
            if name in facts and facts[name] != value:
                raise ValueError(f"shards disagree on fact {name!r}: {facts[name]} vs {value}")
            facts[name] = value
        for table in part:
            merged.setdefault(json.dumps(table.conditions, sort_keys=True), []).append(table)
    tables = []
    for pieces in merged.values():
        columns = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0].columns}
        if len(np.unique(columns["index"])) < len(columns["index"]):
            raise ValueError(f"shards overlap: samples of {pieces[0].conditions} measured twice")
        order = np.argsort(columns["index"], kind="stable")
        tables.append(SampleTable(dict(pieces[0].conditions),
                                  {name: values[order] for name, values in columns.items()}))
    return Records(tables, facts)


def _scalar(value: Any, what: str) -> Condition:
    """A condition value as a plain JSON scalar (numpy scalars converted)."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a string or a number")
    return value


def _fact(value: Any, name: str) -> Any:
    """A fact as JSON (numpy scalars and arrays converted); anything else is refused."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    try:
        json.dumps(value)
    except TypeError as exc:
        raise ValueError(f"fact {name!r}: {exc}") from None
    return value


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
