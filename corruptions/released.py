"""Readers for the released corrupted sets: CIFAR-10/100-C `.npy` files and JPEG trees.

Two layouts (PROTOCOLS.md §3):
- `.npy` (CIFAR-10-C, CIFAR-100-C, and generated sets of small images): `<corruption>.npy` uint8
  (5 n, H, W, C), rows `[(s-1) n : s n]` are severity s in test-set order, and `labels.npy`, the
  n test labels tiled 5 times. Files are memory-mapped and read once per corruption; a severity
  slice reads only the rows asked for.
- JPEG tree (Tiny-ImageNet-C, ImageNet-C, generated sets of large images):
  `<corruption>/<severity>/<wnid>/*.JPEG`, images read as stored (ImageNet-C is already 224x224:
  no resize). Labels come from a given class list, so extra wnid folders (the 1000-folder `frost`
  of one Tiny-ImageNet-C release) are ignored instead of shifting every label. JPEGs are decoded a
  batch at a time by torchvision's `decode_jpeg` (see `ImageFileDataset`).
Every problem raises `CorruptedSetError` naming the file or folder at fault.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from corruptions.catalog import SEVERITIES

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
LABELS_FILE = "labels.npy"
JPEG_START = (0xFF, 0xD8, 0xFF)  # start-of-image marker, then the next marker's 0xFF


class CorruptedSetError(ValueError):
    """A corrupted-set file or folder that is missing or malformed (the message names it)."""


def detect_layout(root: Path | str) -> str:
    """`"npy"` when `root` holds `labels.npy`, `"tree"` when it holds corruption folders."""
    root = Path(root)
    if not root.is_dir():
        raise CorruptedSetError(f"{root}: folder not found; expected a corrupted set "
                                "(<corruption>.npy + labels.npy, or <corruption>/<severity>/"
                                "<wnid>/*.JPEG)")
    if (root / LABELS_FILE).is_file():
        return "npy"
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        return "tree"
    raise CorruptedSetError(f"{root}: neither {LABELS_FILE} nor corruption folders found")


class NpyCorruptions:
    """A CIFAR-C style folder: memory-mapped `<corruption>.npy` files and their `labels.npy`.

    `image_shape` (H, W, C), when given, is what every corruption file must hold per row.
    """

    def __init__(self, root: Path | str, image_shape: tuple[int, int, int] | None = None) -> None:
        self.root = Path(root)
        self.image_shape = image_shape
        self.labels = self._read_labels()
        self.n = len(self.labels) // len(SEVERITIES)
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def test_labels(self) -> np.ndarray:
        """The n labels of one severity block (the clean test labels, in test-set order)."""
        return self.labels[: self.n]

    def _read_labels(self) -> np.ndarray:
        path = self.root / LABELS_FILE
        labels = _load_npy(path)
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise CorruptedSetError(f"{path}: expected a 1-D integer array, found "
                                    f"{labels.dtype} {labels.shape}")
        if len(labels) == 0 or len(labels) % len(SEVERITIES):
            raise CorruptedSetError(f"{path}: {len(labels)} labels is not 5 severities x n")
        blocks = np.array(labels, dtype=np.int64).reshape(len(SEVERITIES), -1)  # a copy
        bad = [s for s, block in zip(SEVERITIES, blocks, strict=True) if
               not np.array_equal(block, blocks[0])]
        if bad:
            raise CorruptedSetError(f"{path}: the labels of severities {bad} disagree with "
                                    "severity 1's (expected the test labels tiled 5 times)")
        return blocks.reshape(-1)

    def array(self, corruption: str) -> np.ndarray:
        """The memory-mapped (5 n, H, W, C) uint8 array of `corruption` (opened once)."""
        if corruption not in self._arrays:
            path = self.root / f"{corruption}.npy"
            array = _load_npy(path)
            if array.dtype != np.uint8:
                raise CorruptedSetError(f"{path}: dtype {array.dtype}, expected uint8")
            if array.ndim == 3:  # grey images stored without a channel axis
                array = array[..., None]
            rows = len(self.labels)
            if array.ndim != 4 or array.shape[0] != rows or array.shape[3] not in (1, 3):
                raise CorruptedSetError(
                    f"{path}: shape {array.shape}, expected ({len(self.labels)}, H, W, 1 or 3) "
                    f"to match the {len(self.labels)} rows of {LABELS_FILE}")
            if self.image_shape is not None and array.shape[1:] != tuple(self.image_shape):
                raise CorruptedSetError(f"{path}: images are {array.shape[1:]} (H, W, C), the "
                                        f"evaluated data set's are {tuple(self.image_shape)}")
            self._arrays[corruption] = array
        return self._arrays[corruption]

    def images(self, corruption: str, severity: int, indices: np.ndarray | None = None
               ) -> np.ndarray:
        """uint8 (k, H, W, C) images of severity `severity` at test-set `indices` (None: all)."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
        array = self.array(corruption)
        start = (severity - 1) * self.n
        if indices is None:
            return np.asarray(array[start:start + self.n])
        return array[start + np.asarray(indices, dtype=np.int64)]


def _load_npy(path: Path) -> np.ndarray:
    """Memory-map a `.npy` file; missing, truncated or non-npy files raise naming `path`."""
    if not path.is_file():
        raise CorruptedSetError(f"{path}: file not found")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        size = path.stat().st_size
        raise CorruptedSetError(f"{path}: not a readable .npy file ({size} bytes; truncated or "
                                f"corrupt download?): {exc}") from exc


class TreeCorruptions:
    """A `<corruption>/<severity>/<wnid>/*.JPEG` tree; label = position of wnid in `classes`.

    `classes` is the model's class list (e.g. the sorted 200 Tiny-ImageNet wnids); None takes
    the sorted folder names of each (corruption, severity), which must then be `num_classes`.
    Folders not in `classes` are ignored (the frost defect); a class folder missing is an error.
    """

    def __init__(self, root: Path | str, classes: list[str] | None = None,
                 num_classes: int | None = None) -> None:
        self.root = Path(root)
        self.classes = list(classes) if classes is not None else None
        self.num_classes = len(classes) if classes is not None else num_classes

    def files(self, corruption: str, severity: int) -> tuple[list[str], np.ndarray]:
        """Paths (by class, then file name) and int64 labels of one (corruption, severity)."""
        folder = self.root / corruption / str(severity)
        if not folder.is_dir():
            raise CorruptedSetError(f"{folder}: folder not found")
        present = {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if self.classes is None:
            classes = sorted(present)
            if self.num_classes is not None and len(classes) != self.num_classes:
                raise CorruptedSetError(
                    f"{folder}: {len(classes)} class folders but the model has "
                    f"{self.num_classes} classes; name the class list (wnids) to map the labels")
        else:
            classes = self.classes
            missing = sorted(set(classes) - present)
            if missing:
                raise CorruptedSetError(f"{folder}: {len(missing)} class folder(s) missing, "
                                        f"e.g. {missing[:3]}")
        paths: list[str] = []
        labels: list[int] = []
        for label, wnid in sorted(enumerate(classes), key=lambda item: item[1]):
            files = sorted(p for p in (folder / wnid).iterdir()
                           if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise CorruptedSetError(f"{folder / wnid}: class folder holds no image")
            paths.extend(str(p) for p in files)
            labels.extend([label] * len(files))
        return paths, np.array(labels, dtype=np.int64)


class ImageFileDataset(Dataset):
    """Images read as stored (no resize) into uint8 (C, H, W) tensors; the size is checked.

    The loader reads each file's bytes (`encoded`) and decodes a batch at once (`decode_batch`):
    JPEGs by torchvision's `decode_jpeg`, on the CPU pixel for pixel PIL's (both libjpeg-turbo,
    tests/test_decode.py); other files (PNG) and every image of a grey (C = 1) set by PIL.
    `gpu_decode`: batches bound for CUDA are decoded there by nvJPEG, faster but not PIL's
    pixels (a CUDA run would not reproduce a CPU run's numbers), hence off by default.
    """

    def __init__(self, paths: list[str], labels: np.ndarray, image_shape: tuple[int, int, int],
                 gpu_decode: bool = False) -> None:
        self.paths = paths
        self.labels = labels
        self.image_shape = tuple(image_shape)  # (C, H, W)
        self.gpu_decode = gpu_decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        data, label = self.encoded(index)
        return self.decode_batch([data], [index], "cpu")[0], label

    def encoded(self, index: int) -> tuple[torch.Tensor, int]:
        """Item `index` as stored: the file's bytes (a 1-D uint8 tensor) and its label."""
        path = self.paths[index]
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise CorruptedSetError(f"{path}: unreadable image ({exc})") from exc
        return torch.from_numpy(data), int(self.labels[index])

    def decode_device(self, device: torch.device | str) -> torch.device:
        """Where a batch bound for `device` is decoded: there with `gpu_decode` and CUDA (colour
        JPEGs only), else on the CPU."""
        device = torch.device(device)
        if self.gpu_decode and device.type == "cuda" and self.image_shape[0] == 3:
            return device
        return torch.device("cpu")

    def decoder_name(self, device: torch.device | str) -> str:
        """The decoder of a run on `device`, for the provenance: 'torchvision.io.decode_jpeg
        (cpu)' or '(cuda)' (other files than JPEGs: PIL), or 'PIL' for a grey set."""
        if self.image_shape[0] != 3:
            return "PIL"
        return f"torchvision.io.decode_jpeg ({self.decode_device(device).type})"

    def decode_batch(self, data: list[torch.Tensor], indices: list[int],
                     device: torch.device | str) -> torch.Tensor:
        """uint8 (k, C, H, W) images on `device` from the bytes `data` of items `indices`: the
        JPEGs by `decode_jpeg` on `device` (CUDA: one nvJPEG call), other files by PIL."""
        device = torch.device(device)
        images: list[torch.Tensor | None] = [None] * len(data)
        jpegs = [k for k, encoded in enumerate(data)
                 if self.image_shape[0] == 3 and tuple(encoded[:3].tolist()) == JPEG_START]
        decoded = self._decode_jpegs([data[k] for k in jpegs], [indices[k] for k in jpegs], device)
        for k, image in zip(jpegs, decoded, strict=True):
            images[k] = image
        for k, image in enumerate(images):
            if image is None:
                images[k] = self._decode_pil(data[k], indices[k]).to(device)
        for image, index in zip(images, indices, strict=True):
            self._check_size(image, index)
        return torch.stack(images)

    def _decode_jpegs(self, data: list[torch.Tensor], indices: list[int], device: torch.device
                      ) -> list[torch.Tensor]:
        """RGB images of the JPEG bytes `data`; on CUDA in one batched call, whose failure is
        retried image by image to name the file at fault."""
        if device.type == "cuda" and len(data) > 1:
            try:
                return _decode_jpeg(data, device)
            except RuntimeError:
                pass  # one bad file fails the whole batch: decode one by one to name it
        return [self._decode_one(encoded, index, device)
                for encoded, index in zip(data, indices, strict=True)]

    def _decode_one(self, data: torch.Tensor, index: int, device: torch.device) -> torch.Tensor:
        try:
            return _decode_jpeg([data], device)[0]
        except RuntimeError as exc:
            raise CorruptedSetError(f"{self.paths[index]}: unreadable image ({exc})") from exc

    def _decode_pil(self, data: torch.Tensor, index: int) -> torch.Tensor:
        """The (C, H, W) image PIL decodes from the bytes `data` (any format, converted to the
        set's RGB or L)."""
        try:
            with Image.open(io.BytesIO(data.numpy())) as image:
                pixels = np.asarray(image.convert("RGB" if self.image_shape[0] == 3 else "L"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise CorruptedSetError(f"{self.paths[index]}: unreadable image ({exc})") from exc
        pixels = pixels.reshape(*pixels.shape[:2], -1)
        return torch.from_numpy(pixels.transpose(2, 0, 1).copy())  # writable, contiguous

    def _check_size(self, image: torch.Tensor, index: int) -> None:
        _, height, width = self.image_shape
        if tuple(image.shape[1:]) != (height, width):
            raise CorruptedSetError(
                f"{self.paths[index]}: image is {image.shape[2]}x{image.shape[1]}, expected "
                f"{width}x{height} (corrupted sets are not resized)")


def _decode_jpeg(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """`decode_jpeg` to RGB on `device`, without the DeprecationWarning torchvision 0.29 gives
    each call (it points to TorchCodec, not yet a dependency)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
