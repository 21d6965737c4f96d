"""Tiny data sets written in the exact released on-disk formats, with content tests can check.

CIFAR images: pixel values 0..49 plus `cifar_step(num_classes) * label` (so the image mean tells the
label), and one pixel of 255 at `cifar_planted_pixel(i)` for the i-th image of each batch file.
Tiny-ImageNet / ImageNet images: mean grey level `class_level(j, n)` for the j-th wnid passed in.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

try:  # numpy >= 2 moved the module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


class Python2Pickler(pickle._Pickler):
    """Writes protocol 2 as Python 2 cPickle did for the CIFAR release: str opcodes, numpy.core."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes | str) -> None:
        """A Python 2 `str` (SHORT_BINSTRING / BINSTRING): both text and bytes were `str` there."""
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        """Name numpy's array reconstructor as Python 2 numpy did."""
        if obj is _reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def cifar_step(num_classes: int) -> int:
    """Grey levels added per label index in CIFAR fixture images."""
    return 200 // num_classes


def cifar_planted_pixel(index: int) -> tuple[int, int, int]:
    """(channel, row, column) of the single 255 pixel in the index-th image of a batch file."""
    return index % 3, (7 * index + 3) % 32, (13 * index + 5) % 32


def class_level(position: int, count: int) -> float:
    """Mean grey level of Tiny-ImageNet / ImageNet fixture images of the position-th wnid given."""
    return 40.0 + 170.0 * position / max(count - 1, 1)


def write_cifar10(directory: Path, n_train_per_batch: int = 6, n_test: int = 10,
                  seed: int = 0) -> Path:
    """Write `cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta); return it."""
    root = Path(directory) / "cifar-10-batches-py"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(1, 6):
        labels = _cycled_labels(rng, n_train_per_batch, 10)
        _dump(root / f"data_batch_{k}", {
            "batch_label": f"training batch {k} of 5",
            "labels": labels,
            "data": _cifar_rows(rng, labels, 10),
            "filenames": [f"train_{k}_{i}.png" for i in range(n_train_per_batch)],
        })
    labels = _cycled_labels(rng, n_test, 10)
    _dump(root / "test_batch", {
        "batch_label": "testing batch 1 of 1",
        "labels": labels,
        "data": _cifar_rows(rng, labels, 10),
        "filenames": [f"test_{i}.png" for i in range(n_test)],
    })
    _dump(root / "batches.meta", {"num_cases_per_batch": n_train_per_batch,
                                  "label_names": CIFAR10_NAMES, "num_vis": 3072})
    return root


def write_cifar100(directory: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Path:
    """Write `cifar-100-python/` (train, test, meta) with fine and coarse labels; return it."""
    root = Path(directory) / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("test", n_test)):
        fine = _cycled_labels(rng, count, 100)
        _dump(root / split, {
            "filenames": [f"{split}_{i}.png" for i in range(count)],
            "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": fine,
            "coarse_labels": [label // 5 for label in fine],
            "data": _cifar_rows(rng, fine, 100),
        })
    _dump(root / "meta", {"fine_label_names": [f"fine_{i}" for i in range(100)],
                          "coarse_label_names": [f"coarse_{i}" for i in range(20)]})
    return root


def write_tinyimagenet(directory: Path, wnids: list[str], n_per_class: int = 3,
                       seed: int = 0) -> Path:
    """Write `tiny-imagenet-200/` (wnids.txt, val/val_annotations.txt, val/images/*.JPEG).

    `wnids.txt` keeps the given order; val images are shuffled across classes as released, and
    the first one is a grayscale JPEG. Returns the `tiny-imagenet-200` folder.
    """
    root = Path(directory) / "tiny-imagenet-200"
    images = root / "val" / "images"
    images.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in wnids))
    rng = np.random.default_rng(seed)
    positions = rng.permutation(np.repeat(np.arange(len(wnids)), n_per_class))
    lines = []
    for i, position in enumerate(positions):
        level = class_level(int(position), len(wnids))
        _save_jpeg(images / f"val_{i}.JPEG", _picture(rng, 64, 64, level), grayscale=i == 0)
        x, y = rng.integers(0, 32, 2)
        lines.append(f"val_{i}.JPEG\t{wnids[position]}\t{x}\t{y}\t{x + 31}\t{y + 31}\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def write_imagenet_val(directory: Path, wnids: list[str], n_per_class: int = 2, seed: int = 0,
                       size: int = 300) -> Path:
    """Write ImageNet val as `val/<wnid>/ILSVRC2012_val_*.JPEG`, non-square, ~`size` px; return it.

    Image sizes vary (landscape and portrait); the first image is a grayscale JPEG.
    """
    root = Path(directory) / "val"
    rng = np.random.default_rng(seed)
    number = 0
    for position, wnid in enumerate(wnids):
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for _ in range(n_per_class):
            number += 1
            long_side = size + int(rng.integers(-size // 5, size // 5 + 1))
            short_side = int(long_side * rng.uniform(0.6, 0.9))
            height, width = (short_side, long_side) if number % 2 else (long_side, short_side)
            picture = _picture(rng, height, width, class_level(position, len(wnids)))
            _save_jpeg(root / wnid / f"ILSVRC2012_val_{number:08d}.JPEG", picture,
                       grayscale=number == 1)
    return root


def _dump(path: Path, batch: dict) -> None:
    """Pickle `batch` to `path` the way the CIFAR release was written (Python 2, protocol 2)."""
    with path.open("wb") as file:
        Python2Pickler(file, protocol=2).dump(batch)


def _cycled_labels(rng: np.random.Generator, count: int, num_classes: int) -> list[int]:
    """`count` labels cycling through the classes, in a seeded random order."""
    return [int(label) for label in rng.permutation(np.arange(count) % num_classes)]


def _cifar_rows(rng: np.random.Generator, labels: list[int], num_classes: int) -> np.ndarray:
    """uint8 (N, 3072) rows (R, G, B planes, row-major) whose brightness encodes the label."""
    offsets = cifar_step(num_classes) * np.asarray(labels, dtype=np.int64)[:, None]
    rows = (rng.integers(0, 50, (len(labels), 3072)) + offsets).astype(np.uint8)
    for i, row in enumerate(rows):
        channel, y, x = cifar_planted_pixel(i)
        row[channel * 1024 + y * 32 + x] = 255
    return rows


def _picture(rng: np.random.Generator, height: int, width: int, level: float) -> np.ndarray:
    """A uint8 (H, W, 3) smooth colour pattern plus noise whose mean grey level is about `level`."""
    ramp = np.linspace(-20, 20, width)[None, :, None] + np.linspace(-10, 10, height)[:, None, None]
    tint = np.array([-8.0, 0.0, 8.0])
    noise = rng.normal(0, 6, (height, width, 3))
    return np.clip(level + ramp + tint + noise, 0, 255).round().astype(np.uint8)


def _save_jpeg(path: Path, picture: np.ndarray, grayscale: bool) -> None:
    """Save an RGB array as JPEG, or as a single-channel JPEG when `grayscale`."""
    image = Image.fromarray(picture)
    (image.convert("L") if grayscale else image).save(path, format="JPEG", quality=95)
