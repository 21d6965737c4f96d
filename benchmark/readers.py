"""Readers for the released on-disk formats of CIFAR-10/100, Tiny-ImageNet and ImageNet val.

ImageNet val is read lazily with a `Preprocessing` (by default the suite's Resize(256) ->
CenterCrop(224), bilinear), optionally restricted to an `ImageList`: a text file of
`<wnid>/<file>` paths, one per line, evaluated in the file's order — RobustBench's 5,000 images
(`read_image_list("robustbench")`, from the installed `robustbench` package) or any such file.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from benchmark.data import EvalData, ImageList, Preprocessing
from benchmark.errors import DataError

try:  # numpy >= 2 moved the module; both names occur in pickles
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

CIFAR10_ARCHIVE = ("cifar-10-batches-py", "cifar-10-python.tar.gz")
CIFAR100_ARCHIVE = ("cifar-100-python", "cifar-100-python.tar.gz")
TINYIMAGENET_ARCHIVE = ("tiny-imagenet-200", "tiny-imagenet-200.zip")
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
TINYIMAGENET_SIZE = 64
IMAGENET_EVAL = Preprocessing(resize=256, crop=224, interpolation="bilinear")  # the suite's
ROBUSTBENCH = "robustbench"  # `[dataset] subset` value: RobustBench's ImageNet list
ROBUSTBENCH_LIST = ("helper_files", "imagenet_test_image_ids.txt")  # inside its package

_ARRAY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for untrusted CIFAR batches: resolves only the globals a numpy array needs."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        """The allowed global `module.name`; anything else is refused before it can run."""
        if (module, name) == ("_codecs", "encode"):
            return self._encode_latin1
        if (module, name) in _ARRAY_GLOBALS:
            return _ARRAY_GLOBALS[module, name]
        raise DataError(
            f"{self._path}: refused to unpickle the global '{module}.{name}'; a CIFAR batch "
            "holds only numpy arrays, lists, numbers and strings, so this file is not one "
            "(and may be malicious)"
        )

    def _encode_latin1(self, text: Any, encoding: Any) -> bytes:
        """How Python 3 protocol-2 pickles store bytes: `_codecs.encode(text, 'latin1')`."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise DataError(f"{self._path}: refused _codecs.encode with encoding {encoding!r}")
        return text.encode("latin1")


def read_cifar10(root: Path | str, split: str = "test") -> EvalData:
    """CIFAR-10 from `cifar-10-batches-py/` (test_batch or data_batch_1..5), uint8 in memory."""
    files = {"test": ["test_batch"], "train": [f"data_batch_{k}" for k in range(1, 6)]}
    return _read_cifar(root, split, files, "labels", 10, "cifar10", CIFAR10_ARCHIVE)


def read_cifar100(root: Path | str, split: str = "test") -> EvalData:
    """CIFAR-100 fine labels from `cifar-100-python/` (test or train), images uint8 in memory."""
    files = {"test": ["test"], "train": ["train"]}
    return _read_cifar(root, split, files, "fine_labels", 100, "cifar100", CIFAR100_ARCHIVE)


def read_tinyimagenet(root: Path | str, split: str = "val") -> EvalData:
    """Tiny-ImageNet val from `tiny-imagenet-200/`, decoded to uint8 (N, 3, 64, 64) in memory.

    Label = position of the wnid in the *sorted* `wnids.txt` (not its file order), as in Manifold
    Mixup and PatchUp, which move val images into per-wnid folders and read them with torchvision
    `ImageFolder` (classes sorted by name). Items follow `val_annotations.txt` order; images may
    lie in `val/images/` (as released) or in `val/images/<wnid>/` (after that rearrangement).
    """
    folder = _archive_dir(root, TINYIMAGENET_ARCHIVE)
    if split != "val":
        raise DataError(
            f"{folder}: unknown Tiny-ImageNet split {split!r}; only 'val' is an evaluation split "
            "with labels (the released 'test' split has none)"
        )
    wnids = _read_wnids(_required_file(folder / "wnids.txt", TINYIMAGENET_ARCHIVE))
    class_index = {wnid: index for index, wnid in enumerate(sorted(wnids))}
    annotations = _required_file(folder / "val" / "val_annotations.txt", TINYIMAGENET_ARCHIVE)
    entries = _read_val_annotations(annotations, class_index)
    images = np.empty((len(entries), TINYIMAGENET_SIZE, TINYIMAGENET_SIZE, 3), dtype=np.uint8)
    for position, (filename, wnid) in enumerate(entries):
        path = _tinyimagenet_image(folder / "val" / "images", filename, wnid)
        pixels = np.asarray(_open_rgb(path))
        if pixels.shape != images.shape[1:]:
            raise DataError(
                f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}, Tiny-ImageNet images are "
                f"{TINYIMAGENET_SIZE}x{TINYIMAGENET_SIZE}"
            )
        images[position] = pixels
    labels = np.array([class_index[wnid] for _, wnid in entries], dtype=np.int64)
    return EvalData(name="tinyimagenet", labels=labels, num_classes=len(wnids),
                    source=str(folder),
                    images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))


def read_imagenet_val(root: Path | str, num_classes: int = 1000,
                      preprocessing: Preprocessing = IMAGENET_EVAL,
                      image_list: ImageList | None = None) -> EvalData:
    """ImageNet val as `root/<wnid>/*.JPEG`, read lazily with `preprocessing` (by default
    Resize(256) -> CenterCrop(224), bilinear).

    Label = position of the folder name among the sorted class folders (torchvision
    `ImageFolder` convention); hidden folders and files (`.name`) and non-image files are skipped.
    The number of class folders must equal `num_classes`: with some folders missing, positions
    among the folders present would not be the model's class indices, a silently wrong label.
    With `image_list`, exactly its images are read, in its order (not sorted), each of which
    must exist under `root`; otherwise every image, class by class, file names sorted.
    """
    root = Path(root)
    expected = "expected ImageNet val sorted into one folder per class (root/<wnid>/*.JPEG)"
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; {expected}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = any(_is_image(p) for p in root.iterdir())
        hint = " (found loose images: the flat val release must be sorted first)" if loose else ""
        raise DataError(f"{root}: no class folders{hint}; {expected}")
    if len(class_dirs) != num_classes:
        raise DataError(
            f"{root}: {len(class_dirs)} class folders but the model has {num_classes} classes; "
            f"{expected}, all {num_classes} of them (a partial copy would shift the labels)"
        )
    if image_list is not None:
        paths, labels = _listed_images(root, class_dirs, image_list)
    else:
        paths, labels = [], []
        for label, class_dir in enumerate(class_dirs):
            files = sorted(p for p in class_dir.iterdir() if _is_image(p))
            if not files:
                raise DataError(f"{class_dir}: class folder holds no .JPEG/.jpeg/.jpg/.png image")
            paths.extend(str(p) for p in files)
            labels.extend([label] * len(files))
    return EvalData(name="imagenet", labels=np.array(labels, dtype=np.int64),
                    num_classes=num_classes, source=str(root),
                    dataset=ImageFiles(paths, labels, preprocessing.transform()),
                    preprocessing=preprocessing, image_list=image_list)


def _listed_images(root: Path, class_dirs: list[Path], image_list: ImageList
                   ) -> tuple[list[str], list[int]]:
    """The paths and labels of `image_list`'s entries under `root`, in the list's order."""
    class_index = {folder.name: label for label, folder in enumerate(class_dirs)}
    paths, labels = [], []
    for number, entry in enumerate(image_list.entries, start=1):
        path = root / entry
        wnid = PurePosixPath(entry).parts[0]
        if wnid not in class_index or not path.is_file():
            raise DataError(
                f"{image_list.source}: entry {number} of {len(image_list.entries)}, {entry!r}, "
                f"is not an image under {root} (no file {path}); the list names ImageNet val "
                "images as <wnid>/<file>, relative to the folder of class folders")
        paths.append(str(path))
        labels.append(class_index[wnid])
    return paths, labels


def read_image_list(spec: str | Path) -> ImageList:
    """The list of images `spec` names: `"robustbench"` (RobustBench's 5,000 ImageNet val
    images, read from the installed `robustbench` package) or a text file of relative image
    paths, one per line (blank lines skipped; `\\` read as `/`). Entries must be relative,
    without `..`, and distinct: a repeated image would count twice."""
    if str(spec) == ROBUSTBENCH:
        path, name = robustbench_image_list(), f"{ROBUSTBENCH} {ROBUSTBENCH_LIST[-1]}"
    else:
        path = Path(spec).expanduser()
        name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the subset list ({exc}); expected a text file "
                        "of image paths like n01440764/ILSVRC2012_val_00000293.JPEG, one per "
                        "line") from exc
    entries: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        raw = line.strip().replace("\\", "/")
        if not raw:
            continue
        entry = PurePosixPath(raw).as_posix()  # `./a//b` -> `a/b`: one spelling per image
        parts = PurePosixPath(entry).parts
        if entry.startswith("/") or ".." in parts or len(parts) < 2:
            raise DataError(f"{path}, line {number}: {entry!r} is not a relative path "
                            "<wnid>/<file> inside the data set's folder")
        if entry in seen:
            raise DataError(f"{path}, line {number}: {entry!r} is listed twice (first on "
                            f"line {seen[entry]}); each image may be evaluated once")
        seen[entry] = number
        entries.append(entry)
    if not entries:
        raise DataError(f"{path}: the subset list names no image")
    return ImageList(name=name, source=str(path), entries=tuple(entries))


def robustbench_image_list() -> Path:
    """RobustBench's ImageNet list (`robustbench/helper_files/imagenet_test_image_ids.txt`) in
    the installed package, found without importing it (its import loads torch, timm, ...)."""
    folders = _package_folders(ROBUSTBENCH)
    if not folders:
        raise DataError(
            'subset = "robustbench" reads RobustBench\'s list of 5,000 ImageNet val images from '
            "the robustbench package, which is not installed: pip install robustbench (or "
            "pip install git+https://github.com/RobustBench/robustbench.git), or pass the "
            "list's file with --subset-file FILE")
    candidates = [Path(folder).joinpath(*ROBUSTBENCH_LIST) for folder in folders]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"the installed robustbench package has no {'/'.join(ROBUSTBENCH_LIST)} "
                    f"(looked for {', '.join(map(str, candidates))}); pass the list's file "
                    "with --subset-file FILE")


def _package_folders(name: str) -> list[str]:
    """The folders of the installed top-level package `name` (none if it is not installed),
    located without running its `__init__`."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    return list(spec.submodule_search_locations or []) if spec is not None else []


class ImageFiles(Dataset):
    """Map-style dataset of image files read lazily as RGB, transformed, with integer labels."""

    def __init__(self, paths: list[str], labels: list[int], transform: Any) -> None:
        self.paths = paths
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(_open_rgb(Path(self.paths[index]))), self.labels[index]

    def with_transform(self, transform: Any) -> ImageFiles:
        """The same files and labels, read with `transform`."""
        return ImageFiles(self.paths, self.labels, transform)

    def decoder_name(self, device: torch.device | str) -> str:
        """'PIL', on any device: the transform's resize is PIL's (timm parity); decoding by
        `decode_jpeg` first gives the same pixels, no faster (bench/bench_decode.py: 1.0x)."""
        return "PIL"


def _read_cifar(
    root: Path | str,
    split: str,
    files: dict[str, list[str]],
    label_key: str,
    num_classes: int,
    name: str,
    archive: tuple[str, str],
) -> EvalData:
    """Read and validate the pickle batches of one CIFAR split and stack them in file order."""
    folder = _archive_dir(root, archive)
    if split not in files:
        raise DataError(f"{folder}: unknown split {split!r}; choose one of {sorted(files)}")
    batches = [
        _read_cifar_batch(_required_file(folder / file, archive), label_key, num_classes)
        for file in files[split]
    ]
    data = np.concatenate([rows for rows, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    # Each row holds the R, G and B planes in turn, each plane 32 rows of 32 pixels.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
    return EvalData(name=name, labels=labels, num_classes=num_classes, source=str(folder),
                    images=images)


def _read_cifar_batch(
    path: Path, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 (N, 3072) rows and int64 labels of one CIFAR pickle batch, safely unpickled."""
    try:
        with path.open("rb") as file:
            batch = _ArrayUnpickler(file, path).load()
    except DataError:
        raise
    except Exception as exc:  # untrusted bytes: any failure means "not a CIFAR batch"
        raise DataError(f"{path}: not a readable CIFAR pickle batch ({exc!r})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(batch).__name__}")
    data = _entry(batch, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), found {found}")
    try:
        labels = np.asarray(_entry(batch, label_key, path))
    except ValueError as exc:
        raise DataError(f"{path}: '{label_key}' is not a list of integers ({exc})") from exc
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: '{label_key}' must be a list of integers, found {labels.dtype} "
                        f"with shape {labels.shape}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} '{label_key}'")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: '{label_key}' outside [0, {num_classes - 1}]: "
                        f"{labels.min()}..{labels.max()}")
    return data, labels.astype(np.int64)


def _entry(batch: dict, key: str, path: Path) -> Any:
    """`batch[key]` under its Python 2 (bytes) or Python 3 (str) name."""
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise DataError(f"{path}: no '{key}' entry; found keys {list(batch)!r}")


def _archive_dir(root: Path | str, archive: tuple[str, str]) -> Path:
    """The extracted archive folder: `root` itself, or `root/<folder>` when given its parent."""
    root = Path(root)
    folder, archive_name = archive
    if root.name != folder and (root / folder).is_dir():
        return root / folder
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; expected the folder '{folder}/' "
                        f"extracted from {archive_name}")
    return root


def _required_file(path: Path, archive: tuple[str, str]) -> Path:
    """`path`, which must exist as released in the archive."""
    if not path.is_file():
        folder, archive_name = archive
        raise DataError(f"{path}: file not found; expected the folder '{folder}/' extracted "
                        f"from {archive_name}")
    return path


def _read_wnids(path: Path) -> list[str]:
    """The distinct wnids listed one per line in `wnids.txt`."""
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not wnids:
        raise DataError(f"{path}: lists no wnids")
    if len(set(wnids)) != len(wnids):
        repeated = sorted({w for w in wnids if wnids.count(w) > 1})
        raise DataError(f"{path}: wnids listed more than once: {repeated}")
    return wnids


def _read_val_annotations(path: Path, class_index: dict[str, int]) -> list[tuple[str, str]]:
    """(filename, wnid) for each line `filename<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h`."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{path}, line {number}: expected 'filename<TAB>wnid<TAB>x y w h', "
                            f"found {line!r}")
        filename, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in class_index:
            raise DataError(f"{path}, line {number}: wnid {wnid!r} is not listed in wnids.txt")
        entries.append((filename, wnid))
    if not entries:
        raise DataError(f"{path}: no annotated images")
    return entries


def _tinyimagenet_image(images_dir: Path, filename: str, wnid: str) -> Path:
    """Where a val image lies: `val/images/<file>` as released, or `val/images/<wnid>/<file>`."""
    for path in (images_dir / filename, images_dir / wnid / filename):
        if path.is_file():
            return path
    raise DataError(f"{images_dir / filename}: image listed in val_annotations.txt not found")


def _is_image(path: Path) -> bool:
    """A visible file with an image suffix, any case."""
    return path.is_file() and not path.name.startswith(".") \
        and path.suffix.lower() in IMAGE_SUFFIXES


def _open_rgb(path: Path) -> Image.Image:
    """The image at `path` decoded as RGB (grayscale and CMYK files converted)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from exc
