"""The run's one input cache: loads once per key, drops the least recently used beyond its
budget, always keeps the newest."""

from __future__ import annotations

import torch

from benchmark.inputs import InputCache


def test_cache_loads_once_and_drops_the_least_recently_used():
    cache = InputCache(max_bytes=2 * 400)  # two tensors of 100 float32
    loads = []

    def load(key):
        loads.append(key)
        return {"points": torch.zeros(100)}

    for key in ("a", "b"):
        cache.get(key, lambda key=key: load(key))
    cache.get("a", lambda: load("a"))  # "a" used again, not reloaded: "b" is now the oldest
    assert loads == ["a", "b"]
    cache.get("c", lambda: load("c"))
    cache.get("a", lambda: load("a"))
    cache.get("b", lambda: load("b"))  # "b" was dropped: loaded again
    assert loads == ["a", "b", "c", "b"]
    tiny = InputCache(max_bytes=0)
    tiny.get("d", lambda: load("d"))
    assert len(tiny) == 1  # the newest is always kept


def test_nbytes_finds_tensors_inside_loaded_objects():
    from dataclasses import dataclass

    import numpy as np

    from benchmark.inputs import nbytes

    @dataclass(frozen=True)
    class Inner:
        images: torch.Tensor

    @dataclass(frozen=True)
    class Loaded:
        made: Inner
        positions: np.ndarray

    loaded = Loaded(Inner(torch.zeros(10, 3, dtype=torch.uint8)), np.arange(5, dtype=np.int64))
    assert nbytes(loaded) == 30 + 40
    assert nbytes({"a": [loaded, torch.zeros(2)]}) == 70 + 8
