"""Evaluation data: labelled [0, 1] images (in memory or lazy) and seeded stratified subsets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset


@dataclass(frozen=True)
class EvalData:
    """A labelled evaluation set whose images are float tensors in [0, 1], shape (C, H, W).

    Exactly one of `images` (an in-memory (N, C, H, W) tensor, float in [0, 1] or uint8 in
    [0, 255], converted per batch; batched by slicing) and
    `dataset` (a map-style dataset yielding `(image, label)`, batched by a DataLoader) is set.
    `labels[i]` is the label of item i; `source` names where the data came from.
    """

    name: str
    labels: np.ndarray
    num_classes: int
    source: str
    images: torch.Tensor | None = None
    dataset: Dataset | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.images is None) == (self.dataset is None):
            raise ValueError("EvalData needs exactly one of `images` and `dataset`")
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
