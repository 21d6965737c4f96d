"""Blur corruptions: defocus, glass, motion, zoom, gaussian.

Inputs uint8 (N, H, W, C), the resolved severity constant, one generator per image; output
floats in [0, 255]. Sizes come from the images (the references hard-code 224 / 32 / 64 px).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from corruptions import ops


def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """Defocus kernel: a disk of `radius` on a grid of at least 17 x 17, normalized, smoothed by
    a 3 x 3 (radius <= 8) or 5 x 5 Gaussian of `alias_sigma` (anti-aliasing), float32 values."""
    half = 8 if radius <= 8 else int(radius)
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    k1 = ops.gaussian_kernel1d(3 if radius <= 8 else 5, alias_sigma)
    smoothed = ops.filter2d(disk[None, :, :, None].astype(np.float64), np.outer(k1, k1))
    return smoothed[0, :, :, 0].astype(np.float32)


def defocus_blur(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Convolution with an anti-aliased disk (radius, alias sigma = c), border reflect-101."""
    kernel = disk_kernel(*c).astype(np.float64)
    return np.clip(ops.filter2d(x / 255.0, kernel), 0, 1) * 255


def glass_blur(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Gaussian blur (sigma), then `iterations` sweeps from the bottom-right corner in which each
    pixel takes the value of a random neighbour at offset in [-d, d - 1]^2, then blur again.

    The reference writes this as a tuple swap of NumPy views, which copies the neighbour into
    the pixel and leaves the neighbour unchanged; that is what is reproduced here.
    """
    sigma, delta, iterations = c
    n, h, w, _ = x.shape
    blurred = (ops.gaussian(x / 255.0, sigma) * 255).astype(np.uint8)
    rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
    draws = np.stack([rng.integers(-delta, delta, size=(iterations, len(rows), len(cols), 2))
                      for rng in rngs])  # (N, it, rows, cols, (dx, dy))
    every = np.arange(n)
    for it in range(iterations):
        for i, row in enumerate(rows):
            for j, col in enumerate(cols):
                dx, dy = draws[:, it, i, j, 0], draws[:, it, i, j, 1]
                blurred[:, row, col] = blurred[every, row + dy, col + dx]
    return np.clip(ops.gaussian(blurred / 255.0, sigma), 0, 1) * 255


def motion_blur(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Linear motion blur of (radius, sigma) along an angle drawn from U(-45, 45) degrees."""
    radius, sigma = c
    out = np.stack([ops.motion_blur_one(image, radius, sigma, rng.uniform(-45, 45))
                    for image, rng in zip(x, rngs, strict=True)])
    return np.clip(out, 0, 255)


def zoom_blur(x: np.ndarray, factors: np.ndarray, rngs: Sequence[np.random.Generator]
              ) -> np.ndarray:
    """Mean of the image and its centre zoomed by each factor (float32, as the reference)."""
    unit = (x / 255.0).astype(np.float32)
    total = np.zeros_like(unit)
    for factor in factors:
        total += ops.clipped_zoom(unit, factor).astype(np.float32)
    return np.clip((unit + total) / (len(factors) + 1), 0, 1) * 255


def gaussian_blur(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Gaussian blur of sigma c per channel (border 'nearest', truncated at 4 sigma)."""
    return np.clip(ops.gaussian(x / 255.0, c), 0, 1) * 255
