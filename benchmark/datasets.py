"""Data set registry: suite names -> readers; the released archives' folder names as defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from benchmark import readers
from benchmark.data import EvalData, ImageList, Preprocessing, stratified_subset
from benchmark.errors import DataError

DIGITS_SPLIT_SEED = 0  # fixed: the splits are part of the data set's definition, not of a run
DIGITS_SIZES = {"test": 600, "val": 200}  # the rest (997 images) is "train"


@cache
def _digits_splits() -> dict[str, np.ndarray]:
    """Stratified train / val / test indices into scikit-learn's digits, fixed for all runs."""
    from sklearn.datasets import load_digits

    labels = load_digits().target
    test = stratified_subset(labels, DIGITS_SIZES["test"], DIGITS_SPLIT_SEED)
    rest = np.setdiff1d(np.arange(len(labels)), test)
    val = rest[stratified_subset(labels[rest], DIGITS_SIZES["val"], DIGITS_SPLIT_SEED)]
    return {"train": np.setdiff1d(rest, val), "val": val, "test": test}


def read_digits(path: Path | None = None, split: str = "test") -> EvalData:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes, grey levels 0-16 scaled to [0, 1])."""
    from sklearn.datasets import load_digits

    splits = _digits_splits()
    if split not in splits:
        raise DataError(f"digits: unknown split {split!r}; choose one of {', '.join(splits)}")
    digits = load_digits()
    index = splits[split]
    images = torch.from_numpy(digits.images[index].astype(np.float32) / 16.0).unsqueeze(1)
    return EvalData(name="digits", labels=digits.target[index].astype(np.int64), num_classes=10,
                    source=f"sklearn.datasets.load_digits ({split} split)", images=images)


@dataclass(frozen=True)
class DatasetInfo:
    """A readable data set: its reader and the folder its archive extracts to (None: embedded).
    `preprocessing`: the resize / crop step its reader applies to image files by default (None:
    images used as stored); such a reader also takes another `preprocessing` and an
    `image_list` (a fixed, ordered subset of its images)."""

    name: str
    reader: Callable[..., EvalData]
    default_folder: str | None
    splits: tuple[str, ...]
    preprocessing: Preprocessing | None = None


DATASETS = {
    info.name: info
    for info in (
        DatasetInfo("digits", read_digits, None, ("train", "val", "test")),
        DatasetInfo("cifar10", readers.read_cifar10, "cifar-10-batches-py", ("train", "test")),
        DatasetInfo("cifar100", readers.read_cifar100, "cifar-100-python", ("train", "test")),
        DatasetInfo("tinyimagenet", readers.read_tinyimagenet, "tiny-imagenet-200", ("val",)),
        DatasetInfo("imagenet", readers.read_imagenet_val, "imagenet/val", ("val",),
                    readers.IMAGENET_EVAL),
    )
}


def dataset_path(name: str, path: str | None, data_root: Path | None) -> Path | None:
    """Where to read data set `name`: `path` (absolute, or under `data_root`), else the default."""
    info = DATASETS[name]
    folder = path if path is not None else info.default_folder
    if folder is None:
        return None
    folder_path = Path(folder).expanduser()
    if folder_path.is_absolute():
        return folder_path
    return (Path(data_root) if data_root is not None else Path.cwd()) / folder_path


def load_dataset(name: str, split: str, path: str | None, data_root: Path | None,
                 image_list: ImageList | None = None) -> EvalData:
    """Read a registered data set split; with `image_list`, exactly the images it lists, in its
    order (data sets read from image files only)."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    info = DATASETS[name]
    if split not in info.splits:
        raise DataError(f"{name}: unknown split {split!r}; choose one of {', '.join(info.splits)}")
    options = {}
    if image_list is not None:
        if info.preprocessing is None:
            readable = ", ".join(n for n, i in DATASETS.items() if i.preprocessing is not None)
            raise DataError(f"{name}: a subset list ({image_list.source}) applies only to data "
                            f"sets read from image folders ({readable})")
        options["image_list"] = image_list
    location = dataset_path(name, path, data_root)
    if location is None:
        return info.reader(split=split)
    if len(info.splits) > 1:
        return info.reader(location, split=split, **options)
    return info.reader(location, **options)
