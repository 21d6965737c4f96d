"""Typed inputs: what a task reads besides the evaluated data, declared as requests.

A task declares `inputs(params, places) -> {name: InputRequest}` when it registers. The harness
fingerprints each request's files into the unit's key, and loads a request the first time a task
body asks for it (`ctx.input(name)`), through one cache shared by every checkpoint and task of
the run: an OOD set is read once for all checkpoints, a surrogate's adversarial set crafted once.
Task bodies keep no caches of their own and import no other task.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmark.data import EvalData
from benchmark.datasets import DATASETS
from benchmark.errors import SuiteError

if TYPE_CHECKING:
    from benchmark.tasks.registry import TaskContext, TaskPlaces

CACHE_BYTES = 2 << 30  # least recently used inputs are dropped beyond this (newest always kept)


class InputRequest(ABC):
    """One typed input of a task: a frozen dataclass, so equal requests share one cache entry."""

    def paths(self, places: TaskPlaces) -> list[Path]:
        """Files whose state keys the task's stored results (none by default)."""
        return []

    def key(self, ctx: TaskContext) -> str:
        """What identifies the loaded value: the request and the evaluated data it depends on."""
        return json.dumps([type(self).__name__, repr(self), ctx.data_id, ctx.seed,
                           str(ctx.data_root), str(ctx.ckpt_dir)])

    @abstractmethod
    def load(self, ctx: TaskContext) -> Any:
        """Read, generate or compute the input (safely: checkpoints only as the run allows)."""


def nbytes(value: Any, depth: int = 4) -> int:
    """Memory held by the tensors and arrays of a loaded input (searched `depth` levels deep
    through containers and object attributes; a lazy data set counts as nothing)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if depth == 0:
        return 0
    if isinstance(value, dict):
        return sum(nbytes(v, depth - 1) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(nbytes(v, depth - 1) for v in value)
    if hasattr(value, "__dict__") and not isinstance(value, torch.nn.Module | type):
        return sum(nbytes(v, depth - 1) for v in vars(value).values())
    return 0


class InputCache:
    """The run's one cache of loaded inputs, least recently used dropped beyond `max_bytes`."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._values: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        """The value cached under `key`, loading it first if needed."""
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key][0]
        value = load()
        self._values[key] = (value, nbytes(value))
        while len(self._values) > 1 and \
                sum(size for _, size in self._values.values()) > self.max_bytes:
            self._values.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class HeldoutSplit(InputRequest):
    """Another split of the evaluated data set (to fit a temperature, to tune ODIN), refused if
    it holds the evaluated images. `param` names the task parameter in error messages."""

    split: str
    param: str

    def load(self, ctx: TaskContext) -> EvalData:
        info = DATASETS.get(ctx.data.name)
        where = f"{self.param} = {self.split!r}"
        if info is None:
            raise SuiteError(f"{where}: data set {ctx.data.name!r} has no named splits")
        if len(info.splits) == 1:
            raise SuiteError(f"{where}: {ctx.data.name} has only the evaluated split "
                             f"{info.splits[0]!r}, no held-out one")
        if self.split not in info.splits:
            raise SuiteError(f"{where}: {ctx.data.name} has the splits "
                             f"{', '.join(info.splits)}")
        if info.default_folder is None:
            heldout = info.reader(split=self.split)
        else:
            heldout = info.reader(Path(ctx.data.source), split=self.split)
        if ctx.data.images is not None and heldout.images is not None:
            # the check is on pixels: half the evaluated images in that split = the same split
            evaluated = {_digest(row) for row in ctx.data.images}
            shared = sum(_digest(row) in evaluated for row in heldout.images)
            if 2 * shared >= len(evaluated):
                raise SuiteError(f"{where}: {shared} of the {len(evaluated)} evaluated images "
                                 "are in that split; fit on data you do not evaluate")
        return heldout


def _digest(image: torch.Tensor) -> bytes:
    """A content hash of one image tensor."""
    return hashlib.blake2b(image.contiguous().numpy().tobytes(), digest_size=16).digest()
