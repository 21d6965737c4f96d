"""Task `shift`: error under natural distribution shift — new test sets collected like the
originals (CIFAR-10.1, CIFAR-10.2, ImageNet-V2) and sketches, renditions and hard photographs of
the same classes (ImageNet-Sketch, ImageNet-R, ImageNet-A); formats in `benchmark.shift_sets`.

Per set (condition `shift_set`, its name in the suite): `top1_err`, `top5_err` (Wilson 95 %
intervals) and `gap_err`, its top-1 error minus the same checkpoint's clean top-1 error on the
evaluated data, in points, with Newcombe's interval for a difference of independent
proportions (the set's images and the clean ones are disjoint samples scored by one fixed
model). ImageNet-A and ImageNet-R hold 200 ImageNet classes: as their authors evaluate, the
prediction is the argmax over those 200 classes' logits (top-5 and the confidence likewise),
and their rows carry the condition `class_subset` (`imagenet-a-200`, `imagenet-r-200`); their
gap is to the clean images of those 200 classes under the same restriction (the "ImageNet-200"
of the ImageNet-R evaluation), not to the 1,000-way clean error.

Parameters:

- ``sets``: table name -> spec: a path (absolute, or under --data-root) whose kind is read from
  its content (`benchmark.shift_sets.detect`), or a table ``{kind, path}`` with kind one of
  cifar10.1 (with ``version`` "v6", the default, or "v4"), cifar10.2, imagenet-v2,
  imagenet-sketch, imagenet-a, imagenet-r; or ``{kind = "split", split = NAME}``: another
  held-out split of the evaluated data set (digits' "val"), drawn from the same distribution —
  a null shift, whose gap shows the sampling noise alone (never "train": the model saw it).
  The name "clean" is reserved (the reference tables).
- ``limit``: at most this many images per set, a seeded class-stratified subset (0 = all).

CIFAR sets need evaluated data of CIFAR-10's 10 classes at 32x32 (used as stored). ImageNet
sets need the evaluated data to be ImageNet val read from wnid folders: labels are mapped to its
class indices (the sorted wnids) and images read with its preprocessing (the suite's, or a
timm checkpoint's own). A missing or malformed set fails the task, naming the file, as the
`ood` task's sets do.

Records: per set a table {shift_set[, class_subset]} with ``index`` (the image's position in
the set as read: CIFAR rows in file order, folders in class order with files sorted) and
`classification_columns` (``correct``, ``correct_top5``, ``pred`` in the model's class indices,
``confidence``); a table {shift_set: "clean"} of the clean data's columns (``index`` = position
in the evaluated data) and, per class subset used, {shift_set: "clean", class_subset} of the
clean images of those classes (left out when the evaluated data holds none: no gap row then).
`benchmark.reductions.shift` computes the rows from these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data import EvalData, stratified_subset
from benchmark.errors import DataError, SuiteError
from benchmark.inputs import HeldoutSplit, InputRequest
from benchmark.params import param
from benchmark.records import Records
from benchmark.reductions.shift import CLEAN_SET, SUBSET
from benchmark.shift_sets import (
    CIFAR10_1,
    CIFAR10_1_DEFAULT,
    CIFAR10_1_VERSIONS,
    CIFAR10_2,
    CIFAR10_2_TEST,
    CIFAR10_CLASSES,
    CIFAR_KINDS,
    CLASS_SUBSET,
    IMAGENET_V2,
    KINDS,
    cifar10_1_files,
    class_subset,
    detect,
    read_cifar10_1,
    read_cifar10_2,
    read_imagenet_v2,
    read_wnid_folders,
)
from benchmark.tasks.registry import (
    TaskContext,
    TaskPlaces,
    classification_columns,
    predict,
    register_task,
)

AUTO = "auto"  # the kind of a spec given as a bare path: read from the content
SPLIT = "split"  # the kind of a spec naming another split of the evaluated data set


def _bad(name: str, problem: str) -> SuiteError:
    return SuiteError(f"parameter 'sets.{name}': {problem}")


def normalize_spec(name: str, spec: Any) -> dict[str, Any]:
    """A set's spec as a table with `kind` (`auto` for a bare path) and `path` (a split of the
    evaluated data set: `split`)."""
    if isinstance(spec, str):
        if not spec:
            raise _bad(name, "empty path")
        return {"kind": AUTO, "path": spec}
    if not isinstance(spec, dict):
        raise _bad(name, f"expected a path or a table, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in (*KINDS, SPLIT):
        raise _bad(name, f"kind {kind!r} is not one of {', '.join((*KINDS, SPLIT))}")
    allowed = {CIFAR10_1: {"kind", "path", "version"}, SPLIT: {"kind", "split"}}.get(
        kind, {"kind", "path"})
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise _bad(name, f"unknown key(s) {', '.join(unknown)} for kind {kind!r}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    needed = "split" if kind == SPLIT else "path"
    if not isinstance(spec.get(needed), str) or not spec[needed]:
        raise _bad(name, f"kind {kind!r} needs a {needed} (a non-empty string)")
    if spec.get("split") == "train":
        raise _bad(name, "the training split is no test set: the model has seen it")
    if spec.get("version", CIFAR10_1_DEFAULT) not in CIFAR10_1_VERSIONS:
        raise _bad(name, f"version must be one of {', '.join(CIFAR10_1_VERSIONS)}")
    return dict(spec)


@dataclass(frozen=True)
class ShiftParams:
    """See the module docstring."""

    sets: dict[str, Any] = param({})
    limit: int = param(0, ge=0)

    def __post_init__(self) -> None:
        if CLEAN_SET in self.sets:
            raise _bad(CLEAN_SET, f"{CLEAN_SET!r} is reserved for the clean reference")
        for name, spec in self.sets.items():
            normalize_spec(name, spec)


def _resolve(path: str, data_root: Path | None) -> Path:
    """An absolute path as given; a relative one under --data-root (else the working dir)."""
    location = Path(path).expanduser()
    if location.is_absolute():
        return location
    return (Path(data_root) if data_root is not None else Path.cwd()) / location


@dataclass(frozen=True)
class LoadedShiftSet:
    """A shift set as evaluated: its data, each image's position in the set as read, and for a
    200-class set its subset's name and the model's class indices of it (sorted)."""

    data: EvalData
    positions: np.ndarray
    class_subset: str | None = None
    classes: np.ndarray | None = None


@dataclass(frozen=True)
class ShiftSetInput(InputRequest):
    """One shift set (its normalized spec as JSON), at most `limit` images (0 = all)."""

    name: str
    spec: str
    limit: int

    def paths(self, places: TaskPlaces) -> list[Path]:
        """The files the set is read from: CIFAR-10.1's two `.npy` files, CIFAR-10.2's
        `.npz`, else the folder (or file) named; none for a split of the evaluated data set
        (read by its own reader, like the held-out splits of `calibration` and `ood`)."""
        spec = json.loads(self.spec)
        if spec["kind"] == SPLIT:
            return []
        path = _resolve(spec["path"], places.data_root)
        if spec["kind"] == CIFAR10_1:
            return list(cifar10_1_files(path, spec.get("version", CIFAR10_1_DEFAULT)))
        if spec["kind"] == CIFAR10_2 and path.is_dir():
            return [path / CIFAR10_2_TEST]
        data_file, labels_file = cifar10_1_files(path)  # a CIFAR-10.1 data file: its labels too
        return [path, labels_file] if data_file == path else [path]

    def load(self, ctx: TaskContext) -> LoadedShiftSet:
        try:
            return _build(self.name, json.loads(self.spec), ctx, self.limit)
        except DataError as exc:
            raise DataError(f"shift set {self.name!r}: {exc}") from exc


def _build(name: str, spec: dict[str, Any], ctx: TaskContext, limit: int) -> LoadedShiftSet:
    """Read one set in the evaluated model's class indexing; a seeded subset with `limit`."""
    kind, subset, classes = spec["kind"], None, None
    if kind == SPLIT:
        data = HeldoutSplit(spec["split"], f"shift: sets.{name}").load(ctx)
        return _limited(data, limit, ctx.seed)
    path = _resolve(spec["path"], ctx.data_root)
    if kind == AUTO:
        spec = detect(path)
        kind = spec["kind"]
    if kind in CIFAR_KINDS:
        data = read_cifar10_1(path, spec.get("version", CIFAR10_1_DEFAULT)) \
            if kind == CIFAR10_1 else read_cifar10_2(path)
        if ctx.data.num_classes != CIFAR10_CLASSES or data.image_shape() != ctx.data.image_shape():
            raise DataError(f"{data.source}: {kind} holds 3x32x32 images of CIFAR-10's 10 "
                            f"classes; the evaluated {ctx.data.name} has {ctx.data.num_classes} "
                            f"classes of {'x'.join(map(str, ctx.data.image_shape()))} images")
    else:
        wnids = _model_wnids(ctx.data)
        if kind == IMAGENET_V2:
            data = read_imagenet_v2(path, len(wnids), ctx.data.preprocessing)
        else:
            subset = CLASS_SUBSET.get(kind)
            allowed = class_subset(subset) if subset else None
            data = read_wnid_folders(path, wnids, ctx.data.preprocessing, kind, allowed)
            if allowed is not None:
                classes = _subset_classes(allowed, wnids, subset)
    return _limited(data, limit, ctx.seed, subset, classes)


def _limited(data: EvalData, limit: int, seed: int, subset: str | None = None,
             classes: np.ndarray | None = None) -> LoadedShiftSet:
    """`data` as evaluated: all of it, or with `limit` a seeded class-stratified subset."""
    positions = np.arange(len(data), dtype=np.int64)
    if 0 < limit < len(data):
        positions = stratified_subset(data.labels, limit, seed).astype(np.int64)
        data = data.subset(positions)
    return LoadedShiftSet(data, positions, subset, classes)


def _model_wnids(data: EvalData) -> list[str]:
    """The evaluated model's ImageNet classes: the sorted class folders of the evaluated
    ImageNet val, which gave its labels."""
    if data.name != "imagenet":
        raise DataError(f"ImageNet test sets are labelled with ImageNet classes; evaluate them "
                        f"on ImageNet val (the imagenet suite), not on {data.name}")
    root = Path(data.source)
    wnids = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(wnids) != data.num_classes:
        raise DataError(f"{root}: {len(wnids)} class folders, the model has {data.num_classes} "
                        "classes")
    return wnids


def _subset_classes(allowed: tuple[str, ...], wnids: list[str], subset: str) -> np.ndarray:
    """The model's class indices of a 200-class subset, sorted; all must be model classes."""
    index = {wnid: label for label, wnid in enumerate(wnids)}
    missing = [wnid for wnid in allowed if wnid not in index]
    if missing:
        raise DataError(f"{len(missing)} of {subset}'s classes are not among the evaluated "
                        f"model's {len(wnids)} (e.g. {', '.join(missing[:3])})")
    return np.sort(np.array([index[wnid] for wnid in allowed], dtype=np.int64))


def restricted_columns(logits: torch.Tensor, labels: torch.Tensor,
                       classes: np.ndarray | None) -> dict[str, np.ndarray]:
    """`classification_columns` of `logits`, or with `classes` (sorted model class indices,
    holding every label) of the logits of those classes only, as ImageNet-A / -R's authors
    score them: argmax, top-5 and softmax confidence over the subset; `pred` is still a
    model class index."""
    if classes is None:
        return classification_columns(logits, labels)
    local = torch.from_numpy(np.searchsorted(classes, labels.numpy()))
    columns = classification_columns(logits[:, torch.from_numpy(classes)], local)
    columns["pred"] = classes[columns["pred"]].astype(np.int32)
    return columns


def _inputs(params: dict[str, Any], places: TaskPlaces) -> dict[str, InputRequest]:
    """The shift sets (`set:NAME`): their files key the stored results."""
    return {f"set:{name}": ShiftSetInput(name, json.dumps(normalize_spec(name, spec),
                                                          sort_keys=True), params["limit"])
            for name, spec in params["sets"].items()}


@register_task("shift", params=ShiftParams, version=1, inputs=_inputs)
def shift(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Top-1 / top-5 error on natural-shift test sets and the gap to the clean top-1 error."""
    if not params["sets"]:
        raise SuiteError("parameter 'sets': no shift sets; name them in the suite "
                         "([tasks.shift.sets] name = \"folder-under-data-root\")")
    records = Records()
    subsets: dict[str, np.ndarray] = {}
    for name in params["sets"]:
        loaded = ctx.input(f"set:{name}")
        logits = predict(ctx.inference_model, loaded.data, ctx.device, ctx.batch_size,
                         ctx.num_workers, ctx.progress)
        conditions: dict[str, Any] = {"shift_set": name}
        if loaded.class_subset is not None:
            conditions[SUBSET] = loaded.class_subset
            subsets[loaded.class_subset] = loaded.classes
        records.add(conditions, index=loaded.positions, **restricted_columns(
            logits, torch.from_numpy(loaded.data.labels), loaded.classes))
    clean, labels = ctx.clean_logits(), ctx.labels()
    records.add({"shift_set": CLEAN_SET}, index=np.arange(len(labels), dtype=np.int64),
                **classification_columns(clean, labels))
    for subset, classes in subsets.items():
        inside = np.flatnonzero(np.isin(ctx.data.labels, classes))
        if len(inside):
            rows = torch.from_numpy(inside)
            records.add({"shift_set": CLEAN_SET, SUBSET: subset}, index=inside,
                        **restricted_columns(clean[rows], labels[rows], classes))
    return records
