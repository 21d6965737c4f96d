"""Evaluation data: labelled [0, 1] images (in memory or lazy) and seeded stratified subsets.

Images read from files of any size (ImageNet val) are resized and centre-cropped as they are
read: that step is a `Preprocessing` value carried by the `EvalData`, and `with_preprocessing`
reads the same files, in the same order, with another one (timm checkpoints are evaluated with
their own). An `ImageList` is a fixed, ordered list of the images to evaluate (RobustBench's
5,000 ImageNet images, or a user's list).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from benchmark.errors import RubenchError

# timm's interpolation names (its `str_to_interp_mode`) and torchvision's other one
INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "nearest-exact": InterpolationMode.NEAREST_EXACT,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "box": InterpolationMode.BOX,
    "hamming": InterpolationMode.HAMMING,
    "lanczos": InterpolationMode.LANCZOS,
}


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes a model input: resize with `interpolation`, centre-crop
    `crop` x `crop` pixels, then a [0, 1] tensor (torchvision's Resize -> CenterCrop ->
    ToTensor). `resize` is the new length of the shorter side (aspect ratio kept), or with
    `squash` of both sides (timm's crop mode 'squash')."""

    resize: int
    crop: int
    interpolation: str = "bilinear"
    squash: bool = False

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; known: "
                             f"{', '.join(INTERPOLATIONS)}")
        if self.resize < 1 or self.crop < 1:
            raise ValueError(f"resize {self.resize} and crop {self.crop} must be >= 1 pixel")

    @classmethod
    def from_crop_fraction(cls, size: int, crop_pct: float, interpolation: str,
                           squash: bool = False) -> Preprocessing:
        """timm's evaluation rule: resize to floor(size / crop_pct), then crop `size`."""
        if not crop_pct > 0:
            raise ValueError(f"crop fraction {crop_pct!r} must be > 0")
        return cls(math.floor(size / crop_pct), size, interpolation, squash)

    def transform(self) -> transforms.Compose:
        """The torchvision transform: PIL image in, (3, crop, crop) float tensor in [0, 1] out."""
        size = (self.resize, self.resize) if self.squash else self.resize
        return transforms.Compose([
            transforms.Resize(size, interpolation=INTERPOLATIONS[self.interpolation]),
            transforms.CenterCrop(self.crop), transforms.ToTensor()])

    def describe(self) -> str:
        """E.g. 'Resize(256, bilinear) -> CenterCrop(224)' ('Resize(235x235, ...)' squashed)."""
        size = f"{self.resize}x{self.resize}" if self.squash else str(self.resize)
        return f"Resize({size}, {self.interpolation}) -> CenterCrop({self.crop})"


@dataclass(frozen=True)
class ImageList:
    """A fixed, ordered list of the images to evaluate: paths relative to the data set's folder
    (`<wnid>/<file>` for ImageNet val), read from the file `source`; `name` says which list it
    is in the provenance."""

    name: str
    source: str
    entries: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """Hash of the entries, in order: the list's part of the data's identity."""
        return hashlib.sha256("\n".join(self.entries).encode()).hexdigest()

    def describe(self) -> str:
        """E.g. 'robustbench imagenet_test_image_ids.txt (5000)'."""
        return f"{self.name} ({len(self.entries)})"


@runtime_checkable
class BatchDecoding(Protocol):
    """A dataset of encoded image files decoded a batch at a time (e.g.
    `corruptions.released.ImageFileDataset`): the loader's workers read the bytes (`encoded`);
    `decode_batch` runs in the workers for the CPU, after them for another device."""

    def encoded(self, index: int) -> tuple[torch.Tensor, int]:
        """Item `index`'s file bytes (1-D uint8) and label."""

    def decode_device(self, device: torch.device | str) -> torch.device:
        """Where a batch bound for `device` is decoded."""

    def decode_batch(self, data: list[torch.Tensor], indices: list[int],
                     device: torch.device | str) -> torch.Tensor:
        """uint8 (k, C, H, W) images on `device` from the bytes `data` of items `indices`."""

    def decoder_name(self, device: torch.device | str) -> str:
        """What decodes the images of a run on `device`, for the provenance."""


@dataclass(frozen=True)
class EvalData:
    """A labelled evaluation set whose images are float tensors in [0, 1], shape (C, H, W).

    Exactly one of `images` (an in-memory (N, C, H, W) tensor, float in [0, 1] or uint8 in
    [0, 255], converted per batch; batched by slicing) and
    `dataset` (a map-style dataset yielding `(image, label)`, batched by a DataLoader) is set.
    `labels[i]` is the label of item i; `source` names where the data came from.
    `preprocessing` is the resize / crop step of images read from files (None: the images are
    used as stored); `image_list` the list that chose and ordered the images, if one did.
    """

    name: str
    labels: np.ndarray
    num_classes: int
    source: str
    images: torch.Tensor | None = None
    dataset: Dataset | None = field(default=None, repr=False)
    preprocessing: Preprocessing | None = None
    image_list: ImageList | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.dataset is None):
            raise ValueError("EvalData needs exactly one of `images` and `dataset`")
        if self.preprocessing is not None and self.dataset is None:
            raise ValueError("a preprocessing applies to images read lazily (`dataset`)")
        size = len(self.images) if self.images is not None else len(self.dataset)
        if size != len(self.labels):
            raise ValueError(
                f"{self.source}: {size} images but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images (read from the first item for lazily loaded sets)."""
        if self.images is not None:
            return tuple(self.images.shape[1:])
        return tuple(self.dataset[0][0].shape)

    def subset(self, indices: np.ndarray) -> EvalData:
        """The items at `indices`, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.images is not None:
            return replace(self, labels=self.labels[indices], images=self.images[indices])
        return replace(self, labels=self.labels[indices],
                       dataset=Subset(self.dataset, indices.tolist()))

    def with_preprocessing(self, preprocessing: Preprocessing) -> EvalData:
        """The same items (same files, subset and order) read with `preprocessing`."""
        if self.preprocessing is None:
            raise ValueError(f"{self.source}: its images are used as stored, not resized and "
                             "cropped when read")
        if preprocessing == self.preprocessing:
            return self
        return replace(self, preprocessing=preprocessing,
                       dataset=_with_transform(self.dataset, preprocessing.transform()))

    def batches(
        self, batch_size: int, device: torch.device | str = "cpu", num_workers: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield `(images, labels)` batches on `device`, in dataset order."""
        device = torch.device(device)
        labels = torch.from_numpy(self.labels)
        if self.images is not None:
            for start in range(0, len(self), batch_size):
                stop = start + batch_size
                yield (_to_unit(self.images[start:stop].to(device, non_blocking=True)),
                       labels[start:stop].to(device, non_blocking=True))
            return
        base, indices = _unwrap(self.dataset)
        decoding = isinstance(base, BatchDecoding)
        decode_on = base.decode_device(device) if decoding else None
        loader = DataLoader(_Encoded(base, indices) if decoding else self.dataset,
                            batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            collate_fn=_DecodeOn(base, decode_on) if decoding else None,
                            pin_memory=device.type == "cuda", persistent_workers=False)
        for images, targets in _own_errors(loader):
            if not isinstance(images, torch.Tensor):  # encoded, for `decode_on` (CUDA)
                images = base.decode_batch(*images, decode_on)
            yield (_to_unit(images.to(device, non_blocking=True)),
                   targets.to(device, non_blocking=True))


def _own_errors(loader: DataLoader) -> Iterator[tuple]:
    """`loader`'s batches; a data error raised in a loader worker (an unreadable file, a
    RubenchError) re-raised with its own message, without the worker's traceback that torch
    prefixes to it, so it reads as it would without workers. Other errors (bugs) keep it."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (RubenchError, ValueError, OSError) as exc:
            message = str(exc)
            _, found, own = message.rpartition(f"{type(exc).__name__}: ")
            if not (message.startswith("Caught ") and found):
                raise
            raise type(exc)(own.strip()) from None
        yield batch


def decoder_name(data: EvalData, device: torch.device | str) -> str | None:
    """What decodes `data`'s image files in a run on `device`, for the provenance (e.g.
    'torchvision.io.decode_jpeg (cuda)', 'PIL'); None if nothing is decoded as it is read."""
    if data.dataset is None:
        return None
    name = getattr(_unwrap(data.dataset)[0], "decoder_name", None)
    return name(device) if callable(name) else None


def _unwrap(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The dataset inside any Subsets of `dataset`, and the indices into it of its items."""
    indices = list(range(len(dataset)))
    while isinstance(dataset, Subset):
        indices = [dataset.indices[i] for i in indices]
        dataset = dataset.dataset
    return dataset, indices


class _Encoded(Dataset):
    """Items `indices` of a `BatchDecoding` dataset as stored: (bytes, label, index)."""

    def __init__(self, dataset: BatchDecoding, indices: list[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, int]:
        index = self.indices[position]
        return (*self.dataset.encoded(index), index)


@dataclass(frozen=True)
class _DecodeOn:
    """Collates `_Encoded` items: decoded here (in the loader's workers) when `device` is the
    CPU, else left encoded as (bytes list, indices) for `decode_batch` on `device`."""

    dataset: BatchDecoding
    device: torch.device

    def __call__(self, items: list[tuple[torch.Tensor, int, int]]
                 ) -> tuple[torch.Tensor | tuple[list[torch.Tensor], list[int]], torch.Tensor]:
        data, labels, indices = (list(column) for column in zip(*items, strict=True))
        targets = torch.tensor(labels, dtype=torch.int64)
        if self.device.type == "cpu":
            return self.dataset.decode_batch(data, indices, self.device), targets
        return (data, indices), targets


def _with_transform(dataset: Dataset, transform: transforms.Compose) -> Dataset:
    """`dataset` (files read by a `with_transform`-able set, possibly inside Subsets) with its
    transform replaced."""
    if isinstance(dataset, Subset):
        return Subset(_with_transform(dataset.dataset, transform), dataset.indices)
    return dataset.with_transform(transform)


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float images pass through unchanged."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def stratified_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of a class-stratified subset of size `limit`, chosen deterministically from `seed`.

    Each class gets its share of `limit` in proportion to its frequency (largest remainders,
    ties broken by class index); items within a class are drawn by a seeded permutation. The
    indices come back sorted, so the subset keeps the data set's order.
    """
    labels = np.asarray(labels)
    if limit <= 0 or limit >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    scaled = counts.astype(np.int64) * limit  # exact integers: quota = scaled / len(labels)
    quota, remainder = np.divmod(scaled, len(labels))
    short = limit - int(quota.sum())
    order = np.lexsort((classes, -remainder))  # largest remainder first, then class index
    quota[order[:short]] += 1
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, take in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == cls)
        chosen.append(members[rng.permutation(len(members))[:take]])
    return np.sort(np.concatenate(chosen))
