"""`rubench corrupt`: write a generated corrupted copy of a data set, once, in a released layout.

`materialize(dataset, out)` corrupts every image of the data set's split with the 19
corruptions x 5 severities (`corruptions.generate`) and writes `<out>/<NAME>-C/` either in the
CIFAR-10-C `.npy` layout (images up to 32 px: `<corruption>.npy` uint8 (5 n, H, W, C) + tiled
`labels.npy`) or as a JPEG tree `<corruption>/<severity>/<class>/*.JPEG` (larger images; JPEG
quality 85, as ImageNet-C was saved), so the `corruptions` task reads it exactly like a released
set. `GENERATED.json` records how it was made; the task labels its results `source =
"generated"`. The set is written under a temporary name and renamed when complete; an existing
set made with the same settings is reused, one made otherwise is an error unless `overwrite`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from benchmark.data import EvalData
from benchmark.datasets import DATASETS, dataset_path, load_dataset
from benchmark.errors import DataError
from corruptions.catalog import SEVERITIES, select
from corruptions.generate import corrupt
from corruptions.tables import get_table
from corruptions.weather import load_frost_textures

# Bump when generated images change (2: snow centre-trimmed before its blur, frost textures
# rescaled as OpenCV does), and bump the `corruptions` task's version with it: stored results
# on generated sets are keyed by that, not by the files.
GENERATOR_VERSION = 2
MANIFEST = "GENERATED.json"
NPY_MAX_SIDE = 32  # larger images are written as a JPEG tree, like Tiny-ImageNet-C / ImageNet-C
JPEG_QUALITY = 85
DEFAULT_TABLES = {"cifar10": "cifar", "cifar100": "cifar", "tinyimagenet": "tinyimagenet",
                  "imagenet": "imagenet"}
DEFAULT_SPLITS = {"tinyimagenet": "val", "imagenet": "val"}


# The folder names the released archives extract to; `rubench corrupt` writes the same ones, so
# the suites find a generated copy where they look for the released set.
CORRUPTED_FOLDERS = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C",
                     "tinyimagenet": "Tiny-ImageNet-C", "imagenet": "ImageNet-C"}


def corrupted_name(dataset: str) -> str:
    """The corrupted copy's folder name: the released archive's, else `<dataset>-C`."""
    return CORRUPTED_FOLDERS.get(dataset, f"{dataset}-C")


def default_table(dataset: str, side: int) -> str:
    """The data set's own table; other data sets: `cifar` scaled to their side (`cifar@8`)."""
    return DEFAULT_TABLES.get(dataset, "cifar" if side == 32 else f"cifar@{side}")


def materialize(dataset: str, out: Path | str, data_root: Path | str | None = None,
                path: str | None = None, split: str | None = None, table: str = "auto",
                seed: int = 0, corruptions: str | list[str] = "all", layout: str = "auto",
                folder: str | None = None, frost_textures: Path | str | None = None,
                batch_size: int = 256, overwrite: bool = False, progress: bool = True) -> Path:
    """Write (or reuse) `<out>/<folder>` (default `corrupted_name(dataset)`, the folder the
    suites read: `CIFAR-10-C` for cifar10); return its path.

    `path` / `data_root` locate the clean data as in a suite's `[dataset]`; `table` is a
    severity table name (`auto`: `default_table`); `layout` is `npy`, `tree` or `auto`
    (`.npy` up to 32 px). `frost_textures`: a folder of frost photographs, else synthetic ones.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown data set {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    split = split or DEFAULT_SPLITS.get(dataset, "test")
    root = Path(data_root) if data_root is not None else None
    data = load_dataset(dataset, split, path, root)
    channels, height, width = data.image_shape()
    table_name = default_table(dataset, min(height, width)) if table == "auto" else table
    try:
        get_table(table_name)
        names = select(corruptions)
    except ValueError as exc:
        raise DataError(f"rubench corrupt: {exc}") from exc
    if layout == "auto":
        layout = "npy" if max(height, width) <= NPY_MAX_SIDE else "tree"
    if layout not in ("npy", "tree"):
        raise DataError(f"rubench corrupt: layout must be npy, tree or auto, got {layout!r}")
    textures = load_frost_textures(frost_textures) if frost_textures else None
    manifest = {
        "generator": "rubench corruptions.generate", "generator_version": GENERATOR_VERSION,
        "dataset": dataset, "split": split, "source": data.source, "n": len(data),
        "labels_sha": _labels_digest(data.labels), "table": table_name, "seed": seed,
        "corruptions": names, "severities": list(SEVERITIES), "layout": layout,
        "frost_textures": textures.source if textures else "synthetic",
        "pixelate_upsample": "box", "image_shape": [height, width, channels],
    }
    target = Path(out) / (folder or corrupted_name(dataset))
    if target.exists():
        existing = _read_manifest(target)
        if existing == manifest:
            return target
        if not existing:
            raise DataError(f"{target}: exists and was not made by rubench (no readable "
                            f"{MANIFEST}): a released set? rubench never replaces it; write "
                            "the generated copy elsewhere (--out, or --folder NAME)")
        made_by = existing.get("generator_version")
        older = {k for k in existing.keys() | manifest.keys()
                 if existing.get(k) != manifest.get(k)} == {"generator_version"} \
            and isinstance(made_by, int) and made_by < GENERATOR_VERSION
        if not (overwrite or older):  # an older generator's copy is rubench's own: remake it
            raise DataError(f"{target}: exists and was not made with these settings "
                            f"({_difference(existing, manifest)}); remove it or pass overwrite")
    _remove_abandoned(target)
    partial = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    partial.mkdir(parents=True)
    writer = _NpyWriter(partial, data, names) if layout == "npy" else \
        _TreeWriter(partial, dataset, data, path, root)
    bar = tqdm(total=len(data) * len(names) * len(SEVERITIES), desc=f"corrupt {dataset}",
               unit="img", disable=not progress)
    start = 0
    for images, _ in data.batches(batch_size):
        pixels = np.rint(images.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        indices = range(start, start + len(pixels))
        for name in names:
            for severity in SEVERITIES:
                out_images = corrupt(pixels, name, severity, table_name, seed, indices=indices,
                                     frost_textures=textures)
                writer.write(name, severity, start, out_images)
                bar.update(len(pixels))
        start += len(pixels)
    bar.close()
    writer.close()
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _swap_in(partial, target, manifest)
    return target


def _swap_in(partial: Path, target: Path, manifest: dict) -> None:
    """Put the finished `partial` folder at `target`: the old copy (rubench's own) is moved
    aside first and removed last, so a kill leaves the old set or the new one, never neither;
    if another run finished the same set meanwhile, its copy is kept."""
    if target.exists():
        if _read_manifest(target) == manifest:  # a concurrent run made the same set
            shutil.rmtree(partial)
            return
        retired = partial.with_suffix(".old")
        target.rename(retired)
        partial.rename(target)
        shutil.rmtree(retired)
        return
    try:
        partial.rename(target)
    except OSError:
        if _read_manifest(target) != manifest:
            raise
        shutil.rmtree(partial)


def _remove_abandoned(target: Path) -> None:
    """Delete partial and retired copies of `target` left by runs that no longer exist."""
    for leftover in target.parent.glob(f".{target.name}.*-*.*"):
        pid = leftover.name[len(target.name) + 2:].split("-", 1)[0]
        if leftover.suffix in (".partial", ".old") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _NpyWriter:
    """`<corruption>.npy` files opened as writable memory maps, filled batch by batch."""

    def __init__(self, root: Path, data: EvalData, names: list[str]) -> None:
        channels, height, width = data.image_shape()
        self.n = len(data)
        self.arrays = {name: np.lib.format.open_memmap(
            root / f"{name}.npy", mode="w+", dtype=np.uint8,
            shape=(len(SEVERITIES) * self.n, height, width, channels)) for name in names}
        np.save(root / "labels.npy", np.tile(data.labels.astype(np.int64), len(SEVERITIES)))

    def write(self, name: str, severity: int, start: int, images: np.ndarray) -> None:
        offset = (severity - 1) * self.n + start
        self.arrays[name][offset:offset + len(images)] = images

    def close(self) -> None:
        for array in self.arrays.values():
            array.flush()
        self.arrays.clear()


class _TreeWriter:
    """`<corruption>/<severity>/<class>/<name>.JPEG`, class folders named so that their sorted
    order is the label order (the data set's wnids where it has them)."""

    def __init__(self, root: Path, dataset: str, data: EvalData, path: str | None,
                 data_root: Path | None) -> None:
        self.root = root
        self.labels = data.labels
        self.classes = _class_names(dataset, data, path, data_root)

    def write(self, name: str, severity: int, start: int, images: np.ndarray) -> None:
        for offset, image in enumerate(images):
            index = start + offset
            folder = self.root / name / str(severity) / self.classes[self.labels[index]]
            folder.mkdir(parents=True, exist_ok=True)
            pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            pil.save(folder / f"{index:08d}.JPEG", format="JPEG", quality=JPEG_QUALITY)

    def close(self) -> None:
        """Nothing is held open."""


def _class_names(dataset: str, data: EvalData, path: str | None, data_root: Path | None
                 ) -> list[str]:
    """Folder of each class index: sorted wnids (Tiny-ImageNet, ImageNet), else `class_NNNN`."""
    location = dataset_path(dataset, path, data_root)
    if dataset == "tinyimagenet" and location is not None:
        wnids = location / "wnids.txt"
        if not wnids.is_file():
            wnids = location / "tiny-imagenet-200" / "wnids.txt"
        return sorted(line.strip() for line in wnids.read_text().splitlines() if line.strip())
    if dataset == "imagenet" and location is not None:
        return sorted(p.name for p in location.iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    return [f"class_{k:04d}" for k in range(data.num_classes)]


def _labels_digest(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def _read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _difference(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not old:
        return f"no readable {MANIFEST}"
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4])

