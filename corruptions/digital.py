"""Digital corruptions: contrast, elastic transform, pixelate, JPEG, and saturate (an extra).

Inputs uint8 (N, H, W, C), the resolved severity constant, one generator per image; output
floats in [0, 255] (pixelate and JPEG are exact uint8 results).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from corruptions import ops

PIXELATE_UPSAMPLING = {"box": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST}


def contrast(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Pull every channel towards its image mean: (x - mean) * c + mean."""
    unit = x / 255.0
    means = unit.mean(axis=(1, 2), keepdims=True)
    return np.clip((unit - means) * c + means, 0, 1) * 255


def saturate(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """HSV saturation S -> clip(S * c[0] + c[1])."""
    hsv = ops.rgb_to_hsv(ops.to_rgb(x) / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return ops.like_input(np.clip(ops.hsv_to_rgb(hsv), 0, 1) * 255, x.shape[-1])


def pixelate(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator],
             upsample: str = "box") -> np.ndarray:
    """Downsample to int(side * c) with a box filter and back up with `upsample`: `box` as
    Hendrycks' generators (the released sets), `nearest` as `imagecorruptions`."""
    h, w = x.shape[1:3]
    small = (max(1, int(w * c)), max(1, int(h * c)))
    out = np.empty(x.shape, np.uint8)
    for i, image in enumerate(x):
        pil = Image.fromarray(image[..., 0] if x.shape[-1] == 1 else image)
        pil = pil.resize(small, Image.Resampling.BOX).resize((w, h), PIXELATE_UPSAMPLING[upsample])
        out[i] = np.asarray(pil).reshape(h, w, x.shape[-1])
    return out.astype(np.float64)


def jpeg_compression(x: np.ndarray, c: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Encode as JPEG of quality c with Pillow (default 4:2:0 chroma subsampling) and decode."""
    out = np.empty(x.shape, np.uint8)
    for i, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if x.shape[-1] == 1 else image).save(
            buffer, "JPEG", quality=int(c))
        out[i] = np.asarray(Image.open(buffer)).reshape(x.shape[1:])
    return out.astype(np.float64)


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 affine matrix taking three (x, y) points `src` to `dst`."""
    design = np.hstack([src.astype(np.float64), np.ones((3, 1))])
    return np.linalg.solve(design, dst.astype(np.float64)).T


def elastic_transform(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]
                      ) -> np.ndarray:
    """Hendrycks' elastic transform: a random affine warp (three points around the centre moved
    by U(-c[2], c[2]) px; bilinear, border reflect-101), then a displacement field of
    Gaussian-smoothed (sigma c[1], border reflect, truncate 3) U(-1, 1) noise times c[0] px,
    sampled bilinearly (border reflect). `imagecorruptions` uses another elastic transform."""
    alpha, sigma, shift = c
    unit = (x / 255.0).astype(np.float32)
    h, w, channels = unit.shape[1:]
    centre = np.float32([h, w]) // 2  # the reference's (row, col) pair used as an (x, y) point
    side = min(h, w) // 3
    src = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.empty(unit.shape)
    for i, rng in enumerate(rngs):
        dst = src + rng.uniform(-shift, shift, size=src.shape).astype(np.float32)
        warped = _warp_affine(unit[i], affine_from_points(src, dst))
        dx = (ops.gaussian(rng.uniform(-1, 1, size=(1, h, w)), sigma, mode="reflect",
                           truncate=3)[0] * alpha).astype(np.float32)
        dy = (ops.gaussian(rng.uniform(-1, 1, size=(1, h, w)), sigma, mode="reflect",
                           truncate=3)[0] * alpha).astype(np.float32)
        coords = [rows + dy, cols + dx]
        for k in range(channels):
            out[i, ..., k] = ndimage.map_coordinates(warped[..., k], coords, order=1,
                                                     mode="reflect")
    return np.clip(out, 0, 1) * 255


def _warp_affine(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """OpenCV `warpAffine(image, matrix)` semantics (matrix maps source (x, y) to destination),
    bilinear, border reflect-101; (H, W, C) float32 -> float64."""
    forward = np.vstack([matrix, [0, 0, 1]])
    inverse = np.linalg.inv(forward)  # destination (x, y) -> source (x, y)
    a, b, e = inverse[0]
    c, d, f = inverse[1]
    # in (row, col) order: row' = d row + c col + f, col' = b row + a col + e
    out = np.empty(image.shape, np.float64)
    for k in range(image.shape[-1]):
        out[..., k] = ndimage.affine_transform(image[..., k].astype(np.float64),
                                               np.array([[d, c], [b, a]]), offset=(f, e),
                                               order=1, mode="mirror")
    return out
