"""Task `corruptions`: top-1 error on a corrupted copy of the evaluated set, with mCE summaries.

The corrupted set is read from a folder (released CIFAR-10/100-C, Tiny-ImageNet-C, ImageNet-C,
or one made by `benchmark.corrupt.materialize`, which leaves a `GENERATED.json` manifest: its
results carry `source = "generated"`, the released sets' `source = "released"`). The -C-bar sets
(CIFAR-10-C-Bar, ImageNet-C-Bar: `corruptions = "cifar10_c_bar"` / `"imagenet_c_bar"`) have the
same layouts and are read alike, from `<-C folder>-Bar` by default; nothing generates them.
Their cells have category `c_bar`, whose `category_err` and `severity_err` average the ten.

Subset (`--limit`): the runner's clean data is a seeded class-stratified subset of the test split.
For the `.npy` layout, whose rows follow test-set order, the same test indices are taken at every
(corruption, severity); they are recomputed from `labels.npy` with the run's seed and checked
against the clean subset's labels. For JPEG trees (whose images are not the clean files for
Tiny-ImageNet-C), each (corruption, severity) gets the same seeded stratified subset of its own
files, as many as the clean subset holds.

Intervals (95 %): each `top1_err` cell is a count over its images (Wilson). The summaries
`corruption_err` (mean over severities), `category_err` and `mean_corruption_err` (means of
corruption errors) average cells measured on the same images, so their interval is a bootstrap
that resamples images (`Metric.image_mean` over each image's share of misclassified cells; every
corruption has the same severities, so that share's mean is the mean of the corruption means)
and their n counts images. Cells hold the same images when they are the same rows of the `.npy`
files, or the same `<wnid>/<file>` names in a JPEG tree (true of the released sets); a summary
over cells that do not is the mean of the cell rates with no interval, its n the sum of the
cells' n. `corruption_err_sum` and `mean_corruption_err_sum` (sums over S severities) are S times
the means, interval included. `mce` and `relative_mce` carry no interval (n as
`mean_corruption_err`'s). `severity_err` (conditions `category`, `severity`) is the mean over a
category's corruptions at one severity, and with `category = "benchmark"` over the 15 benchmark
corruptions (each only when all its corruptions are evaluated), with the same kind of
interval: the report's error-vs-severity figure draws these rows.

Records: one table per (corruption, severity) under its `top1_err` row's conditions
(corruption, severity, category, source), with `classification_columns` (`correct`,
`correct_top5` with more than 5 classes, `pred`, `confidence`) and `index`: for the `.npy`
layout the image's position in the evaluated data (the same test-set rows at every cell), for
JPEG trees its position in the cell folder's listing, with `image_id` (a 64-bit fingerprint of its
`<wnid>/<file>` name) telling which cells hold the same images. For the AlexNet-normalized mCE
rows (released ImageNet-C, all five severities, the 15 benchmark corruptions) a table under
{"corruption": "clean"} holds the clean data's columns, from the shared clean forward pass.
Facts: `dataset`, `source` ("released" / "generated"), `layout` ("npy" / "tree") and, for a
JPEG tree, `decoder` (what decoded its files: `decoder_name`).
`benchmark.reductions.corruptions` computes every row from these.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.corrupt import GENERATOR_VERSION, corrupted_name, materialize
from benchmark.data import EvalData, decoder_name, stratified_subset
from benchmark.errors import DataError, SuiteError
from benchmark.inputs import InputRequest
from benchmark.params import param
from benchmark.records import Records
from benchmark.reductions.corruptions import CLEAN, cell_conditions, wants_mce
from benchmark.tasks.registry import (
    Axis,
    TaskContext,
    TaskPlaces,
    classification_columns,
    predict,
    register_task,
)
from corruptions.catalog import (
    ALL,
    BENCHMARK,
    C_BAR,
    CATEGORIES,
    IMAGENET_C_BAR_PARAMETERS,
    SEVERITIES,
    is_released,
    select,
)
from corruptions.released import (
    CorruptedSetError,
    ImageFileDataset,
    NpyCorruptions,
    TreeCorruptions,
    detect_layout,
)
from corruptions.tables import get_table

# The folder each data set's corrupted copy extracts to (released) or is written to (generated).
MANIFEST = "GENERATED.json"


def corrupted_folder(dataset: str, path: str | None, data_root: Path | None,
                     c_bar: bool = False) -> Path:
    """`path` (absolute, or relative to `data_root`), else the data set's default folder: its
    -C set's (`CIFAR-10-C`), or with `c_bar` the -C-bar set's (`CIFAR-10-C-Bar`)."""
    folder = Path(path).expanduser() if path else Path(_default_name(dataset, c_bar))
    if folder.is_absolute():
        return folder
    return (Path(data_root) if data_root is not None else Path.cwd()) / folder


def _default_name(dataset: str, c_bar: bool) -> str:
    """The folder a data set's released -C (or -C-bar) archive extracts to."""
    return f"{corrupted_name(dataset)}-Bar" if c_bar else corrupted_name(dataset)


@dataclass(frozen=True)
class CorruptedSource:
    """A resolved corrupted set: its folder, `source` (released / generated) and layout."""

    folder: Path
    source: str
    layout: str


@dataclass(frozen=True)
class CorruptedSetInput(InputRequest):
    """The corrupted copy of the evaluated data set: `path` (absolute, or under --data-root;
    "" = the data set's default folder), generated with severity `table` when `generate` is
    set and it is missing or outdated, then checked (a generated set's manifest must name this
    data set and the current generator). `c_bar`: only -C-bar corruptions are read (the
    default folder is the -C-bar set's)."""

    path: str
    generate: bool
    table: str
    extra: tuple[str, ...] = ()  # registered corruptions beyond the catalog's (generated only)
    c_bar: bool = False

    def folder(self, dataset: str, data_root: Path | None) -> Path:
        """Where the set is, or will be written."""
        return corrupted_folder(dataset, self.path or None, data_root, self.c_bar)

    def paths(self, places: TaskPlaces) -> list[Path]:
        """The folder; a set the task generates itself (missing, or carrying a manifest) is
        left out: its content follows from the parameters and seed, already in the key, and
        fingerprinting it would re-key the results once it exists."""
        folder = self.folder(places.dataset, places.data_root)
        generated = self.generate and (not folder.exists() or (folder / MANIFEST).is_file())
        return [] if generated else [folder]

    def load(self, ctx: TaskContext) -> CorruptedSource:
        folder = self.folder(ctx.data.name, ctx.data_root)
        lacking = _lacking(folder, self.extra)
        if self.generate and (not folder.exists() or _outdated(folder) or lacking):
            materialize(ctx.data.name, folder.parent, data_root=ctx.data_root,
                        folder=folder.name, table=self.table, progress=ctx.progress,
                        corruptions=[*ALL, *self.extra], overwrite=bool(lacking))
        source = "generated" if (folder / MANIFEST).is_file() else "released"
        if source == "generated":
            _check_manifest(folder, ctx)
            if _outdated(folder):
                raise DataError(f"{folder}: generated by an older rubench (generator version "
                                f"< {GENERATOR_VERSION}), whose images differ from this "
                                "version's; set `generate = true` to remake it, or run "
                                "`rubench corrupt --overwrite`")
        layout = _checked(lambda: detect_layout(folder),
                          hint=_missing_hint(ctx.data.name, folder, self.c_bar))
        return CorruptedSource(folder, source, layout)


@dataclass(frozen=True)
class WnidsInput(InputRequest):
    """A class-list file of a JPEG tree (one wnid a line; sorted, the position is the class)."""

    file: Path

    def paths(self, places: TaskPlaces) -> list[Path]:
        return [self.file]

    def load(self, ctx: TaskContext) -> list[str]:
        return _read_wnids(self.file)


def _read_wnids(path: Path) -> list[str]:
    """The sorted wnids of a class-list file."""
    if not path.is_file():
        raise DataError(f"{path}: wnids file not found")
    return sorted(line.strip() for line in path.read_text().splitlines() if line.strip())


def _inputs(params: dict[str, Any], places: TaskPlaces) -> dict[str, InputRequest]:
    """The corrupted set and the wnids file: replacing either re-keys the results."""
    names = select(params["corruptions"], list(params["categories"]), c_bar=True)
    extra = tuple(c for c in names if c not in ALL and c not in C_BAR)
    inputs: dict[str, InputRequest] = {
        "corrupted": CorruptedSetInput(params["path"], params["generate"], params["table"],
                                       extra, c_bar=all(c in C_BAR for c in names))}
    if params["wnids"]:
        inputs["wnids"] = WnidsInput(_wnids_path(params["wnids"], places.data_root))
    return inputs


def _wnids_path(value: str, data_root: Path | None) -> Path:
    """A `wnids` parameter as a path: absolute, or under --data-root."""
    path = Path(value).expanduser()
    return data_root / path if not path.is_absolute() and data_root is not None else path


@dataclass(frozen=True)
class CorruptionsParams:
    """`path`: the corrupted-set folder ("" = the data set's default folder under --data-root,
    `CIFAR-10-C`, or `CIFAR-10-C-Bar` when only -C-bar corruptions are selected);
    `corruptions`: "all" (19), "benchmark" (15), "extra" (4), "cifar10_c_bar" or
    "imagenet_c_bar" (10) or a list of names, restricted to `categories` when given; `wnids`:
    JPEG trees' class list file (one wnid a line, sorted = index); `generate`: make the set with
    `rubench corrupt`'s generator when it is missing, with severity `table` ("auto": the data
    set's own) -- refused for -C-bar corruptions, which have no generator."""

    path: str = param("")
    corruptions: str | list[str] = param("all")
    categories: list[str] = param([], choices=tuple(CATEGORIES), distinct=True)
    severities: list[int] = param(list(SEVERITIES), choices=SEVERITIES, nonempty=True,
                                  distinct=True)
    wnids: str = param("")
    generate: bool = param(False)
    table: str = param("auto")

    def __post_init__(self) -> None:
        try:
            if not select(self.corruptions, list(self.categories), c_bar=not self.generate):
                raise SuiteError("parameters 'corruptions' and 'categories' select nothing")
            if self.table != "auto":
                get_table(self.table)
        except ValueError as exc:
            raise SuiteError(str(exc)) from None


def _cells_axis(params: dict[str, Any], n: int) -> Axis:
    """The shard axis: the (corruption, severity) cells, of `n` images each."""
    cells = len(select(params["corruptions"], list(params["categories"]), c_bar=True)) \
        * len(params["severities"])
    return Axis(cells, images=n, aligned=False)


@register_task("corruptions", params=CorruptionsParams, version=3, inputs=_inputs,
               axis=_cells_axis)
def corruptions_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Top-1 error per corruption x severity; means per corruption / category; mean CE, mCE."""
    names = select(params["corruptions"], list(params["categories"]), c_bar=True)
    severities = sorted(params["severities"])
    corrupted = ctx.input("corrupted")
    folder, source, layout = corrupted.folder, corrupted.source, corrupted.layout
    _check_released(names, source, folder)
    evaluate = _npy_sets if layout == "npy" else _tree_sets
    records = Records(facts={"dataset": ctx.data.name, "source": source, "layout": layout})
    pairs = [(c, s) for c in names for s in severities]
    part = ctx.part(len(pairs))  # a shard measures some of the cells
    sets = evaluate(ctx, folder, params)
    for corruption, severity in tqdm(pairs[part], desc="corruptions", leave=False,
                                     disable=not ctx.progress):
        data, index, images = _checked(lambda c=corruption, s=severity: sets(c, s))
        logits = _checked(lambda d=data: predict(ctx.inference_model, d, ctx.device, ctx.batch_size,
                                                 ctx.num_workers))
        records.add(cell_conditions(corruption, severity, source), index=index,
                    **classification_columns(logits, torch.as_tensor(data.labels)),
                    **({} if images is None else {"image_id": images}))
        decoder = decoder_name(data, ctx.device)
        if decoder is not None:  # image files (a JPEG tree): what decoded them
            records.facts["decoder"] = decoder
    if part.start == 0 and wants_mce(ctx.data.name, source, severities) \
            and all(c in names for c in BENCHMARK):
        labels = ctx.labels()
        records.add(CLEAN, index=np.arange(len(labels), dtype=np.int64),
                    **classification_columns(ctx.clean_logits(), labels))
    return records


def _npy_sets(ctx: TaskContext, folder: Path, params: dict[str, Any]):
    """A function (corruption, severity) -> (EvalData, `index`, None) over the `.npy` layout's
    rows matching the evaluated data: the same test-set rows at every cell, so `index` (the
    position in the evaluated data) identifies the image."""
    store = NpyCorruptions(folder, image_shape=_hwc(ctx.data))
    test_labels = store.test_labels
    if len(ctx.data) > store.n:
        raise DataError(f"{folder / 'labels.npy'}: {store.n} images per severity, fewer than "
                        f"the {len(ctx.data)} evaluated clean images")
    indices = None if len(ctx.data) == store.n else \
        stratified_subset(test_labels, len(ctx.data), ctx.seed)
    chosen = test_labels if indices is None else test_labels[indices]
    index = np.arange(len(chosen), dtype=np.int64)
    if not np.array_equal(chosen, ctx.data.labels):
        raise DataError(f"{folder / 'labels.npy'}: labels disagree with the evaluated data set's "
                        f"({int((chosen != ctx.data.labels).sum())} of {len(chosen)} differ); "
                        "is this the corrupted copy of this split, in test-set order?")

    def load(corruption: str, severity: int) -> tuple[EvalData, np.ndarray, None]:
        images = store.images(corruption, severity, indices)
        tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())  # writable, contiguous
        return EvalData(name=f"{ctx.data.name}-C", labels=chosen, num_classes=ctx.data.num_classes,
                        source=str(folder / f"{corruption}.npy"), images=tensor), index, None

    return load


def _tree_sets(ctx: TaskContext, folder: Path, params: dict[str, Any]):
    """A function (corruption, severity) -> (EvalData, `index`, `image_id`) over one JPEG-tree
    folder (seeded subset): `index` is each image's position in the folder's listing (classes
    in order, files sorted), `image_id` a fingerprint of its `<wnid>/<file>` name."""
    classes = _class_list(ctx, params)
    _check_severity_folders(folder, select(params["corruptions"], list(params["categories"]),
                                           c_bar=True), params["severities"])
    tree = TreeCorruptions(folder, classes=classes, num_classes=ctx.data.num_classes)
    if classes is not None and len(classes) != ctx.data.num_classes:
        raise DataError(f"{params['wnids'] or 'wnids.txt'}: {len(classes)} classes, the data set "
                        f"has {ctx.data.num_classes}")
    shape = ctx.data.image_shape()

    def load(corruption: str, severity: int) -> tuple[EvalData, np.ndarray, np.ndarray]:
        paths, labels = tree.files(corruption, severity)
        keep = np.arange(len(labels), dtype=np.int64)
        if len(ctx.data) < len(labels):
            keep = stratified_subset(labels, len(ctx.data), ctx.seed).astype(np.int64)
            paths, labels = [paths[i] for i in keep], labels[keep]
        names = ["/".join(Path(p).parts[-2:]) for p in paths]  # <wnid>/<file>
        return EvalData(name=f"{ctx.data.name}-C", labels=labels, num_classes=ctx.data.num_classes,
                        source=str(folder / corruption / str(severity)),
                        dataset=ImageFileDataset(paths, labels, shape)), keep, name_ids(names)

    return load


def name_ids(names: list[str]) -> np.ndarray:
    """Per name, a 64-bit fingerprint (BLAKE2b) as int64: equal names, equal ids; two cells'
    `image_id` columns are equal when they hold the same files in the same order."""
    digests = b"".join(hashlib.blake2b(name.encode(), digest_size=8).digest() for name in names)
    return np.frombuffer(digests, dtype="<i8").astype(np.int64)


def _class_list(ctx: TaskContext, params: dict[str, Any]) -> list[str] | None:
    """Sorted wnids from the `wnids` file, Tiny-ImageNet's own wnids.txt, or None (folders)."""
    if params["wnids"]:
        return ctx.input("wnids")
    if ctx.data.name == "tinyimagenet" and ctx.data_root is not None:
        path = ctx.data_root / "tiny-imagenet-200" / "wnids.txt"
        return _read_wnids(path) if path.is_file() else None
    return None


def _hwc(data: EvalData) -> tuple[int, int, int]:
    channels, height, width = data.image_shape()
    return height, width, channels


def _outdated(folder: Path) -> bool:
    """A set rubench generated with an older generator (remade: its images changed)."""
    try:
        made_by = json.loads((folder / MANIFEST).read_text()).get("generator_version")
    except (OSError, ValueError):
        return False  # not rubench's, or unreadable: `_check_manifest` reports it
    return isinstance(made_by, int) and made_by < GENERATOR_VERSION


def _lacking(folder: Path, names: tuple[str, ...]) -> list[str]:
    """Of `names`, those a set rubench generated in `folder` does not hold (none for a set
    that is missing or not rubench's)."""
    try:
        held = json.loads((folder / MANIFEST).read_text()).get("corruptions", [])
    except (OSError, ValueError):
        return []
    return [name for name in names if name not in held]


def _check_severity_folders(folder: Path, names: list[str], severities: list[int]) -> None:
    """ImageNet-C-Bar as the authors' make_imagenet_c_bar.py writes it names each severity
    folder by its parameter (`blue_noise_sample/0.80/`): refused, naming the renames to the
    released archive's `1..5`, rather than mapped, so that a set has one layout on disk."""
    renames = []
    for name in names:
        by_parameter = [f"{p:.2f}" for p in IMAGENET_C_BAR_PARAMETERS.get(name, ())]
        if any((folder / name / p).is_dir() for p in by_parameter) and \
                not all((folder / name / str(s)).is_dir() for s in severities):
            renames.append(f"{name}/{{{','.join(by_parameter)}}} -> "
                           f"{name}/{{{','.join(map(str, SEVERITIES))}}}")
    if renames:
        raise DataError(f"{folder}: severity folders named by the corruption's parameter, as "
                        "make_imagenet_c_bar.py writes them; rubench reads the released "
                        "archive's <corruption>/<1..5>/<wnid>/ layout: rename "
                        + "; ".join(renames))


def _check_released(names: list[str], source: str, folder: Path) -> None:
    """A released set holds only the catalog's corruptions and those registered as released."""
    if source != "released":
        return
    missing = [name for name in names if not is_released(name)]
    if missing:
        raise DataError(f"{folder}: a released set, which does not hold {', '.join(missing)} "
                        "(registered with released=False); evaluate it on a generated set: "
                        "`generate = true` with a `path` of its own")


def _check_manifest(folder: Path, ctx: TaskContext) -> None:
    """A generated set must have been made from this data set."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from exc
    if manifest.get("dataset") != ctx.data.name:
        raise DataError(f"{path}: generated from data set {manifest.get('dataset')!r}, "
                        f"evaluating {ctx.data.name!r}")


def _missing_hint(dataset: str, folder: Path, c_bar: bool) -> str:
    if c_bar or dataset in ("cifar10", "cifar100", "tinyimagenet", "imagenet"):
        return (f"; extract the released {_default_name(dataset, c_bar)} archive there, or set "
                "the task's `path`")
    return (f"; make it once with `rubench corrupt --dataset {dataset} --out {folder.parent}` "
            "(or set the task's `generate = true`)")


def _checked(fn, hint: str = ""):
    """Run `fn`, turning the library's ValueErrors about files or names into rubench errors."""
    try:
        return fn()
    except CorruptedSetError as exc:
        raise DataError(f"{exc}{hint}") from exc
    except ValueError as exc:
        raise SuiteError(f"corruptions: {exc}") from exc
