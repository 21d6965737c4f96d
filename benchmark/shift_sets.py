"""Readers for natural-distribution-shift test sets in their released formats (task `shift`).

Each reader returns an `EvalData` labelled in the evaluated model's class indexing:

- CIFAR-10.1 (Recht et al. 2018, github.com/modestyachts/CIFAR-10.1): `cifar10.1_<v4|v6>_data.npy`,
  uint8 (N, 32, 32, 3) (N = 2,021 for v4, 2,000 for v6), and `cifar10.1_<v4|v6>_labels.npy`,
  CIFAR-10 class indices (int32 as released).
- CIFAR-10.2 (Lu et al. 2020, github.com/modestyachts/cifar-10.2): `cifar102_test.npz` with
  `images` uint8 (2000, 32, 32, 3) and `labels` int64; its other members (`label_names`,
  `ti_indices`, `keywords`) are not read, so nothing is ever unpickled.
- ImageNet-V2 (Recht et al. 2019): `imagenetv2-<variant>-format-val/<k>/*.jpeg`, variants
  matched-frequency, threshold0.7 and top-images, folders named by the ImageNet class index
  k = 0..999 (sorted-wnid order), not by wnid: label = int(folder name). torchvision's
  `ImageFolder`, which the authors' README shows, would sort them as strings ('0', '1', '10',
  '100', ...) and mislabel 988 of the 1,000 classes.
- ImageNet-Sketch (Wang et al. 2019): `sketch/<wnid>/*.JPEG`, the 1,000 ImageNet classes.
- ImageNet-A (Hendrycks et al. 2021) and ImageNet-R (Hendrycks et al. 2021): `imagenet-a/<wnid>/`,
  `imagenet-r/<wnid>/`, 200 classes each (their authors' lists ship in `benchmark/classlists/`);
  the README.txt beside ImageNet-A's folders is skipped.

The 32x32 sets are used as stored. Image folders are read lazily with a `Preprocessing`, the
one the evaluated ImageNet val is read with (Resize(256) -> CenterCrop(224) by default).
Every problem raises `DataError` naming the file or folder at fault.
"""

from __future__ import annotations

import re
import zipfile
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from benchmark.data import EvalData, Preprocessing
from benchmark.errors import DataError
from benchmark.readers import IMAGE_SUFFIXES, ImageFiles

CIFAR10_1, CIFAR10_2 = "cifar10.1", "cifar10.2"
IMAGENET_V2, IMAGENET_SKETCH = "imagenet-v2", "imagenet-sketch"
IMAGENET_A, IMAGENET_R = "imagenet-a", "imagenet-r"
KINDS = (CIFAR10_1, CIFAR10_2, IMAGENET_V2, IMAGENET_SKETCH, IMAGENET_A, IMAGENET_R)
CIFAR_KINDS = (CIFAR10_1, CIFAR10_2)  # arrays of 32x32 images, CIFAR-10's 10 classes
CIFAR10_CLASSES = 10
CIFAR10_1_VERSIONS = ("v4", "v6")
CIFAR10_1_DEFAULT = "v6"  # the authors' recommendation; v4 is the paper's main table
CIFAR10_2_TEST = "cifar102_test.npz"
CIFAR_SHAPE = (32, 32, 3)
# The 200-class sets: their class subset's name (a condition of their records) and list file.
CLASS_SUBSET = {IMAGENET_A: "imagenet-a-200", IMAGENET_R: "imagenet-r-200"}
CLASS_LIST_FILES = {"imagenet-a-200": "imagenet_a_200.txt", "imagenet-r-200": "imagenet_r_200.txt"}
_WNID = re.compile(r"n\d{8}")
_CIFAR10_1_FILE = re.compile(r"cifar10\.1_(v\d+)_data\.npy")


@cache
def class_subset(name: str) -> tuple[str, ...]:
    """The sorted wnids of a 200-class subset (`imagenet-a-200`, `imagenet-r-200`), from the
    list shipped in `benchmark/classlists/` (its header names the authors' source)."""
    text = (resources.files("benchmark") / "classlists" / CLASS_LIST_FILES[name]).read_text()
    wnids = tuple(line.strip() for line in text.splitlines()
                  if line.strip() and not line.startswith("#"))
    if len(set(wnids)) != 200 or list(wnids) != sorted(wnids) \
            or not all(_WNID.fullmatch(w) for w in wnids):
        raise DataError(f"benchmark/classlists/{CLASS_LIST_FILES[name]}: expected 200 distinct, "
                        "sorted wnids (a damaged rubench installation?)")
    return wnids


def cifar10_1_files(path: Path, version: str = CIFAR10_1_DEFAULT) -> tuple[Path, Path]:
    """(data, labels) files of CIFAR-10.1: `path` is their folder (read at `version`) or the
    data file itself (`cifar10.1_<v>_data.npy`, its version from the name)."""
    path = Path(path)
    found = _CIFAR10_1_FILE.fullmatch(path.name)
    if found:
        return path, path.with_name(f"cifar10.1_{found.group(1)}_labels.npy")
    return path / f"cifar10.1_{version}_data.npy", path / f"cifar10.1_{version}_labels.npy"


def read_cifar10_1(path: Path | str, version: str = CIFAR10_1_DEFAULT) -> EvalData:
    """CIFAR-10.1 from its two `.npy` files (see `cifar10_1_files`), uint8 in memory."""
    data_file, labels_file = cifar10_1_files(Path(path), version)
    images = _check_images(_load_npy(data_file), data_file)
    labels = _check_labels(_load_npy(labels_file), len(images), labels_file)
    return _array_set(data_file.name.removesuffix("_data.npy"), images, labels, str(data_file))


def read_cifar10_2(path: Path | str) -> EvalData:
    """CIFAR-10.2's test set from `cifar102_test.npz` (`path`: the file or its folder): only
    its `images` and `labels` are read, without unpickling anything."""
    path = Path(path)
    if path.is_dir():
        path = path / CIFAR10_2_TEST
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected CIFAR-10.2's {CIFAR10_2_TEST}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("images", "labels") if key not in archive.files]
            if missing:
                raise DataError(f"{path}: no {' or '.join(map(repr, missing))} array; found "
                                f"{archive.files} (expected CIFAR-10.2's images and labels)")
            images, labels = archive["images"], archive["labels"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    images = _check_images(images, path, "images")
    labels = _check_labels(labels, len(images), path, "labels")
    return _array_set("cifar10.2", images, labels, str(path))


def read_imagenet_v2(root: Path | str, num_classes: int, preprocessing: Preprocessing
                     ) -> EvalData:
    """ImageNet-V2 as `root/<class index>/*.jpeg`: label = the folder's number (numeric order,
    files sorted), read lazily with `preprocessing`."""
    root = Path(root)
    numbered = []
    for folder in _class_folders(root):
        name = folder.name
        if not (name.isdigit() and str(int(name)) == name and int(name) < num_classes):
            raise DataError(f"{folder}: ImageNet-V2 class folders are named by the class index "
                            f"0..{num_classes - 1} (not by wnid); found {name!r}")
        numbered.append((int(name), folder))
    return _folder_set("imagenet-v2", root, sorted(numbered), num_classes, preprocessing)


def read_wnid_folders(root: Path | str, class_wnids: list[str], preprocessing: Preprocessing,
                      name: str, allowed: tuple[str, ...] | None = None) -> EvalData:
    """`root/<wnid>/*` (ImageNet-Sketch, -A, -R): label = the wnid's position in `class_wnids`
    (the evaluated model's classes), folders in wnid order, files sorted, read lazily with
    `preprocessing`. With `allowed` (a 200-class subset) every folder must be one of those."""
    root = Path(root)
    index = {wnid: label for label, wnid in enumerate(class_wnids)}
    labelled = []
    for folder in _class_folders(root):
        if allowed is not None and folder.name not in allowed:
            raise DataError(f"{folder}: {folder.name!r} is not one of {name}'s "
                            f"{len(allowed)} classes (is this the right set?)")
        if folder.name not in index:
            raise DataError(f"{folder}: {folder.name!r} is not a class of the evaluated "
                            f"model's {len(class_wnids)} ImageNet classes")
        labelled.append((index[folder.name], folder))
    return _folder_set(name, root, sorted(labelled), len(class_wnids), preprocessing)


def detect(path: Path) -> dict[str, str]:
    """The spec (`kind`, `path`, CIFAR-10.1's `version`) of the set found at `path`, from its
    content: a CIFAR-10.1 data file or folder (v6), CIFAR-10.2's `.npz` or its folder,
    class-index folders (ImageNet-V2), or wnid folders: exactly ImageNet-A's or ImageNet-R's
    200 classes, else ImageNet-Sketch (1,000-way). A partial copy of A or R is refused rather
    than evaluated 1,000-way: name its kind."""
    spec = {"path": str(path)}
    if not path.exists():
        raise DataError(f"{path}: shift set not found")
    if path.is_file():
        if _CIFAR10_1_FILE.fullmatch(path.name):
            return {"kind": CIFAR10_1, **spec}
        if path.suffix == ".npz":
            return {"kind": CIFAR10_2, **spec}
    elif cifar10_1_files(path)[0].is_file():
        return {"kind": CIFAR10_1, **spec, "version": CIFAR10_1_DEFAULT}
    elif (path / CIFAR10_2_TEST).is_file():
        return {"kind": CIFAR10_2, **spec}
    else:
        names = {folder.name for folder in _class_folders(path)}
        if all(name.isdigit() for name in names):
            return {"kind": IMAGENET_V2, **spec}
        within = [kind for kind, subset in CLASS_SUBSET.items()
                  if names <= set(class_subset(subset))]
        exact = [kind for kind in within if names == set(class_subset(CLASS_SUBSET[kind]))]
        if exact:
            return {"kind": exact[0], **spec}
        if within:
            raise DataError(f"{path}: {len(names)} wnid folders, all among "
                            f"{' and '.join(within)}'s 200 classes but not all of them: name "
                            "the set's kind (kind = \"imagenet-a\" / \"imagenet-r\")")
        if all(_WNID.fullmatch(name) for name in names):
            return {"kind": IMAGENET_SKETCH, **spec}
    raise DataError(f"{path}: not a shift set rubench can read (CIFAR-10.1 .npy files, "
                    "CIFAR-10.2's .npz, or a folder of class folders)")


def _load_npy(path: Path) -> np.ndarray:
    """A `.npy` file's array (never unpickled); missing or malformed files raise naming it."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({path.stat().st_size} bytes; "
                        f"truncated or corrupt download?): {exc}") from exc


def _check_images(images: np.ndarray, path: Path, key: str = "") -> np.ndarray:
    """`images`, which must be uint8 (N, 32, 32, 3)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != CIFAR_SHAPE:
        where = f"{path} ({key!r})" if key else str(path)
        raise DataError(f"{where}: {images.dtype} {images.shape}, expected uint8 "
                        f"(N, {', '.join(map(str, CIFAR_SHAPE))}) images")
    return images


def _check_labels(labels: np.ndarray, n: int, path: Path, key: str = "") -> np.ndarray:
    """`labels` as int64: a 1-D integer array of `n` CIFAR-10 class indices."""
    where = f"{path} ({key!r})" if key else str(path)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{where}: {labels.dtype} {labels.shape}, expected a 1-D integer array")
    if len(labels) != n:
        raise DataError(f"{where}: {len(labels)} labels for {n} images")
    if n and (labels.min() < 0 or labels.max() >= CIFAR10_CLASSES):
        raise DataError(f"{where}: labels outside 0..{CIFAR10_CLASSES - 1}: "
                        f"{labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def _array_set(name: str, images: np.ndarray, labels: np.ndarray, source: str) -> EvalData:
    """uint8 NHWC images as an in-memory `EvalData` (NCHW, used as stored)."""
    tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return EvalData(name=name, labels=labels, num_classes=CIFAR10_CLASSES, source=source,
                    images=tensor)


def _class_folders(root: Path) -> list[Path]:
    """The visible sub-folders of `root` (files beside them, like a README, are skipped)."""
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class folders; expected <class>/<image> folders")
    return folders


def _folder_set(name: str, root: Path, labelled: list[tuple[int, Path]], num_classes: int,
                preprocessing: Preprocessing) -> EvalData:
    """The images of (label, folder) pairs, in that order, files sorted, read lazily."""
    paths: list[str] = []
    labels: list[int] = []
    for label, folder in labelled:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder}: class folder holds no .JPEG/.jpeg/.jpg/.png image")
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return EvalData(name=name, labels=np.array(labels, dtype=np.int64), num_classes=num_classes,
                    source=str(root), dataset=ImageFiles(paths, labels, preprocessing.transform()),
                    preprocessing=preprocessing)
