"""In-between-class samples (CutMix, Yun et al. 2019): two images of different classes mixed.

Image i of the evaluation set is paired with a partner of another class, drawn uniformly among
all images of other classes from `per_index.uniforms(seed, PARTNER_STREAM, [i])`: the pairs
depend only on (seed, labels), never on batch size, order or checkpoint.

Mixes, for a ratio `lam` in (0, 0.5] (x1 = image i, x2 = its partner):
- `mixup`: lam * x1 + (1 - lam) * x2;
- `cutmix`: x1 with a box of area fraction (1 - lam) pasted from x2 at the same place. Box
  placement conventions: `inside` (default) — sides round(side * sqrt(1 - lam)), top-left corner
  uniform over the positions that keep the whole box inside the image, so the pasted area is
  (1 - lam) up to pixel rounding; `clipped` — CutMix's training sampler: sides
  int(side * sqrt(1 - lam)), centre uniform over the pixels, box clipped at the border (its
  extent is centre -/+ side // 2), so the pasted area is often smaller than (1 - lam).
The measure is the share of predictions that are neither source class.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from corruptions.per_index import uniforms

MIXES = ("mixup", "cutmix")
PLACEMENTS = ("inside", "clipped")
PARTNER_STREAM = 0x50617274  # "Part"
BOX_STREAM = 0x426F78  # "Box"


def partners(labels: np.ndarray, seed: int) -> np.ndarray:
    """For each image i, the index of a partner image of another class (uniform among them)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("in-between samples need images of at least two classes")
    order = np.argsort(labels, kind="stable")  # images grouped by class, index order within
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    block = np.searchsorted(classes, labels)
    others = len(labels) - counts[block]  # images of other classes than image i's
    k = np.minimum((uniforms(seed, PARTNER_STREAM, np.arange(len(labels)))[:, 0]
                    * others).astype(np.int64), others - 1)
    # k-th image of `order` once image i's class block is skipped
    position = np.where(k < starts[block], k, k + counts[block])
    return order[position]


def mixup(x1: torch.Tensor, x2: torch.Tensor, lam: float) -> torch.Tensor:
    """Mixup-style in-between samples lam * x1 + (1 - lam) * x2 (one fused kernel)."""
    return torch.lerp(x2, x1, lam)


def cut_boxes(indices: np.ndarray, height: int, width: int, lam: float, seed: int,
              placement: str = "inside") -> np.ndarray:
    """(n, 4) boxes (top, bottom, left, right; bottom / right exclusive) of area ~(1 - lam)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    if placement not in PLACEMENTS:
        raise ValueError(f"box placement must be one of {', '.join(PLACEMENTS)}, "
                         f"got {placement!r}")
    u = uniforms(seed, BOX_STREAM, indices, draws=2)
    ratio = math.sqrt(1.0 - lam)
    if placement == "inside":
        h = min(height, math.floor(height * ratio + 0.5))
        w = min(width, math.floor(width * ratio + 0.5))
        top = np.minimum((u[:, 0] * (height - h + 1)).astype(np.int64), height - h)
        left = np.minimum((u[:, 1] * (width - w + 1)).astype(np.int64), width - w)
        return np.stack([top, top + h, left, left + w], axis=1)
    h, w = int(height * ratio), int(width * ratio)
    cy = np.minimum((u[:, 0] * height).astype(np.int64), height - 1)
    cx = np.minimum((u[:, 1] * width).astype(np.int64), width - 1)
    return np.stack([np.clip(cy - h // 2, 0, height), np.clip(cy + h // 2, 0, height),
                     np.clip(cx - w // 2, 0, width), np.clip(cx + w // 2, 0, width)], axis=1)


def cutmix(x1: torch.Tensor, x2: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
    """CutMix-style in-between samples: x1 with box j of `boxes` taken from x2, per image j."""
    height, width = x1.shape[-2:]
    b = torch.as_tensor(np.asarray(boxes), device=x1.device)
    rows = torch.arange(height, device=x1.device)
    cols = torch.arange(width, device=x1.device)
    inside_rows = (rows >= b[:, 0:1]) & (rows < b[:, 1:2])  # (n, H)
    inside_cols = (cols >= b[:, 2:3]) & (cols < b[:, 3:4])  # (n, W)
    mask = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]
    return torch.where(mask, x2, x1)


def neither_count(predictions: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> int:
    """Number of predictions that are neither source class."""
    return int(((predictions != y1) & (predictions != y2)).sum())
