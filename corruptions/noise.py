"""Noise corruptions: gaussian, shot (Poisson), impulse (salt & pepper), speckle.

Each takes uint8 (N, H, W, C) images, the resolved severity constant and one random generator
per image, and returns floats in [0, 255] (the caller truncates to uint8, as the references do).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def gaussian_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """x / 255 + N(0, c^2) per pixel and channel."""
    unit = x / 255.0
    noise = np.stack([rng.normal(size=unit.shape[1:], scale=c) for rng in rngs])
    return np.clip(unit + noise, 0, 1) * 255


def shot_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Poisson(x / 255 * c) / c: photon noise with rate c (smaller c = stronger noise)."""
    unit = x / 255.0
    counts = np.stack([rng.poisson(image * c) for rng, image in zip(rngs, unit, strict=True)])
    return np.clip(counts / float(c), 0, 1) * 255


def impulse_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Salt & pepper: each pixel and channel replaced with probability c, by 0 or 1 equally
    (scikit-image `random_noise(mode='s&p', amount=c)`)."""
    unit = x / 255.0
    out = unit.copy()
    for image, rng in zip(out, rngs, strict=True):
        flipped = rng.random(image.shape) < c
        salted = rng.random(image.shape) < 0.5
        image[flipped & salted] = 1.0
        image[flipped & ~salted] = 0.0
    return out * 255


def speckle_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """x + x * N(0, c^2): multiplicative noise."""
    unit = x / 255.0
    noise = np.stack([rng.normal(size=unit.shape[1:], scale=c) for rng in rngs])
    return np.clip(unit + unit * noise, 0, 1) * 255
