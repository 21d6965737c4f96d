"""Per-sample records: exact round trips, refused inputs, shard merging, canonical keys."""

from __future__ import annotations

import io

import numpy as np
import pytest

from benchmark.records import Records, concat, condition_key


def _records() -> Records:
    records = Records(facts={"temperature": np.float64(1.5), "grid": np.arange(3)})
    records.add({"eps": np.float32(0.25), "norm": "linf", "severity": np.int64(3)},
                index=np.arange(5), correct=np.array([1, 0, 1, 1, 0], bool),
                pred=np.arange(5, dtype=np.int32), score=np.linspace(-1, 1, 5),
                perturbation_norm=np.array([0.0, np.inf, 0.5, 1.0, np.nan]))
    return records


def test_encode_decode_is_exact_and_json_clean():
    records = _records()
    back = Records.decode(records.encode())
    [table], [again] = records.tables, back.tables
    assert again.conditions == {"eps": 0.25, "norm": "linf", "severity": 3}
    assert type(again.conditions["severity"]) is int  # numpy scalars became JSON numbers
    for name, values in table.columns.items():
        assert again[name].dtype == values.dtype
        np.testing.assert_array_equal(again[name], values)
    assert back.facts == {"temperature": 1.5, "grid": [0, 1, 2]}


@pytest.mark.parametrize("conditions, columns, message", [
    ({}, {"name": np.array(["a", "b"])}, "holds <U1 values"),
    ({}, {"mixed": np.array([1, "x"], dtype=object)}, "holds object values"),
    ({"norm": "l2"}, {"norm": np.zeros(2)}, "norm: both a condition and a column"),
    ({"where": [1, 2]}, {}, "condition 'where'"),
    ({}, {"a": np.zeros(2), "b": np.zeros(3)}, "differ in length"),
])
def test_add_refuses_what_could_not_be_stored_or_read_back(conditions, columns, message):
    with pytest.raises(ValueError, match=message):
        Records().add(conditions, index=np.arange(len(next(iter(columns.values()), [0, 1]))),
                      **columns)


def test_a_fact_that_is_not_json_fails_at_encoding():
    records = Records(facts={"model": object()})
    with pytest.raises(ValueError, match="fact 'model'"):
        records.encode()


def test_decode_never_unpickles():
    buffer = io.BytesIO()
    header = b'{"format": 1, "facts": {}, "tables": [{"conditions": {}, "columns": ["index"]}]}'
    np.savez(buffer, header=np.frombuffer(header, np.uint8),
             **{"t0/index": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="allow_pickle"):
        Records.decode(buffer.getvalue())


def test_concat_sorts_shards_by_index_and_refuses_overlaps():
    full = _records()
    table = full.tables[0]
    odd, even = (Records([table.take(table["index"] % 2 == parity)], dict(full.facts))
                 for parity in (1, 0))
    merged = concat([odd, even])
    for name, values in table.columns.items():
        np.testing.assert_array_equal(merged.tables[0][name], values)
    with pytest.raises(ValueError, match="shards overlap"):
        concat([odd, odd])
    with pytest.raises(ValueError, match="disagree on fact"):
        concat([odd, Records([], {"temperature": 2.0})])


def test_condition_key_is_the_same_from_a_task_and_from_a_csv():
    from_task = {"eps": 0.5, "severity": 3, "corruption": "fog"}
    from_csv = {"severity": 3.0, "corruption": "fog", "eps": np.float64(0.5), "bin": float("nan")}
    assert condition_key(from_task) == condition_key(from_csv)
    assert condition_key({"eps": 0.5}) != condition_key({"eps": 0.25})
