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

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms
from torchvision.transforms import InterpolationMode

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
        loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=False,
                            num_workers=num_workers, pin_memory=device.type == "cuda",
                            persistent_workers=False)
        for images, targets in loader:
            yield (_to_unit(images.to(device, non_blocking=True)),
                   targets.to(device, non_blocking=True))


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
