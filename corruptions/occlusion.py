"""Center and boundary occlusion (CutMix, Yun et al. 2019; Chun et al. 2019) on [0, 1] images.

A centred rectangular hole whose sides are a fraction `frac` of the image's sides: `center`
occlusion fills the hole with a constant, `boundary` occlusion fills everything outside it.

Pixel convention (rubench's; the papers state sizes in pixels only): a side of `frac * size`
pixels is rounded half up (`floor(frac * size + 0.5)`, so 1/16 of 8 px is 1 px), and the hole
starts at row `(height - h) // 2`, column `(width - w) // 2`. When `size - h` is odd the hole
therefore sits half a pixel up / left of the exact centre (the extra border row / column is at
the bottom / right). Square images get square holes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MODES = ("center", "boundary")


def hole_side(frac: float, size: int) -> int:
    """Pixels a hole of `frac` (0..1) of a side of `size` pixels spans: rounded half up."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"hole fraction must lie in [0, 1], got {frac}")
    # the 1e-9 keeps binary fractions such as 0.15 * 10 = 1.5000000000000002 on the half
    return min(size, math.floor(frac * size + 0.5 + 1e-9))


def hole_box(frac: float, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), bottom / right exclusive, of the centred hole of `frac`."""
    h, w = hole_side(frac, height), hole_side(frac, width)
    top, left = (height - h) // 2, (width - w) // 2
    return top, top + h, left, left + w


def occlusion_mask(frac: float, height: int, width: int, mode: str = "center",
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean (height, width) mask, True where `mode` occlusion of `frac` fills the image."""
    if mode not in MODES:
        raise ValueError(f"occlusion mode must be one of {', '.join(MODES)}, got {mode!r}")
    top, bottom, left, right = hole_box(frac, height, width)
    mask = torch.zeros((height, width), dtype=torch.bool, device=device)
    mask[top:bottom, left:right] = True
    return mask if mode == "center" else ~mask


def occlude(images: torch.Tensor, frac: float, mode: str = "center",
            fill: float | Sequence[float] | torch.Tensor = 0.0) -> torch.Tensor:
    """A copy of `images` (N, C, H, W) with `mode` occlusion of `frac` filled with `fill`.

    `fill` is one value or one per channel, in the images' [0, 1] pixel space: 0 is black, the
    normalization mean is "grey" (0 after normalization).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    channels, height, width = images.shape[1:]
    value = torch.as_tensor(fill, dtype=images.dtype, device=images.device).reshape(-1)
    if len(value) not in (1, channels):
        raise ValueError(f"fill has {len(value)} values, the images have {channels} channels")
    mask = occlusion_mask(frac, height, width, mode, images.device)
    return torch.where(mask, value.view(-1, 1, 1), images)
