"""Batched image operations the corruptions are built from, on float (N, H, W, C) arrays.

Each mirrors the library call of the reference generators that it replaces (scikit-image,
OpenCV, SciPy), so that results agree with them to float precision: the border modes are named
after the reference (`reflect101` = OpenCV's default BORDER_REFLECT_101 = NumPy's `reflect`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, signal

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as OpenCV's RGB2GRAY and PIL's "L"


def gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0
             ) -> np.ndarray:
    """Gaussian blur over H and W of (N, H, W[, C]) like `skimage.filters.gaussian` per image
    (default mode 'nearest', truncate 4, channels independent)."""
    sigmas = [0.0, sigma, sigma] + [0.0] * (x.ndim - 3)
    return ndimage.gaussian_filter(np.asarray(x, dtype=np.float64), sigmas, mode=mode,
                                   truncate=truncate)


def filter2d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel of (N, H, W, C) with a 2-D kernel, border reflect-101, float64
    (OpenCV `filter2D` with its default border; FFT for large kernels, as OpenCV does)."""
    kh, kw = kernel.shape
    padded = np.pad(np.asarray(x, np.float64),
                    ((0, 0), (kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2), (0, 0)),
                    mode="reflect")
    flipped = np.asarray(kernel, np.float64)[::-1, ::-1][None, :, :, None]
    if kh * kw > 25:
        return signal.fftconvolve(padded, flipped, mode="valid", axes=(1, 2))
    return signal.convolve(padded, flipped, mode="valid", method="direct")


def gaussian_kernel1d(size: int, sigma: float) -> np.ndarray:
    """OpenCV's `getGaussianKernel(size, sigma)` for sigma > 0: sampled, normalized to sum 1."""
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def zoom_bilinear(x: np.ndarray, factor: float) -> np.ndarray:
    """(N, h, w, C) zoomed by `factor` over H and W with linear interpolation, output size
    round(h * factor); corner-aligned like `scipy.ndimage.zoom(order=1)`; float64."""
    h, w = x.shape[1:3]
    size = (round(h * factor), round(w * factor))
    planes = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float64))
    out = F.interpolate(planes, size=size, mode="bilinear", align_corners=True)
    return out.permute(0, 2, 3, 1).numpy()


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre of (N, H, W, C) by `factor`: the central ceil(H / factor) rows and
    columns, zoomed (to round(ceil(H / factor) * factor), which may exceed H), then the centred
    H x W, as the reference generators trim (`make_cifar_c.py`'s `clipped_zoom`)."""
    h, w = x.shape[1:3]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = zoom_bilinear(x[:, top:top + ch, left:left + cw], factor)
    trim_top, trim_left = (zoomed.shape[1] - h) // 2, (zoomed.shape[2] - w) // 2
    return zoomed[:, trim_top:trim_top + h, trim_left:trim_left + w]


def motion_kernel(radius: float, sigma: float) -> np.ndarray:
    """Half-Gaussian weights of a motion blur of `radius`: width 2 r + 1, normalized."""
    width = int(2 * radius + 1)
    weights = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2)) / (math.sqrt(2 * math.pi) * sigma)
    return weights / weights.sum()


def motion_blur_one(image: np.ndarray, radius: float, sigma: float, angle: float
                    ) -> np.ndarray:
    """Motion blur of one (H, W[, C]) image along `angle` degrees: a weighted sum of copies
    shifted by whole pixels with edge replication (the ImageMagick-free blur of
    `imagecorruptions`); stops when a shift reaches the image size. Float64."""
    kernel = motion_kernel(radius, sigma)
    width = len(kernel)
    h, w = image.shape[:2]
    rad = np.deg2rad(angle)
    step_y, step_x = width * np.sin(rad), width * np.cos(rad)
    hypot = math.hypot(step_y, step_x)
    shifts = []
    for i in range(width):
        dy = -math.ceil(i * step_y / hypot - 0.5)
        dx = -math.ceil(i * step_x / hypot - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break
        shifts.append((dy, dx))
    pad = max(max(abs(dy), abs(dx)) for dy, dx in shifts)
    widths = ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(np.asarray(image, np.float64), widths, mode="edge")
    out = np.zeros(image.shape, np.float64)
    for weight, (dy, dx) in zip(kernel, shifts, strict=False):
        out += weight * padded[pad - dy:pad - dy + h, pad - dx:pad - dx + w]
    return out


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] (..., 3) to HSV in [0, 1], as `skimage.color.rgb2hsv` (ties: blue > green
    > red decide the hue formula; grey pixels get hue and saturation 0)."""
    value = rgb.max(axis=-1)
    delta = value - rgb.min(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        saturation = np.where(delta == 0, 0.0, delta / value)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        hue = np.where(b == value, 4.0 + (r - g) / delta,
                       np.where(g == value, 2.0 + (b - r) / delta, (g - b) / delta))
    hue = np.where(delta == 0, 0.0, (hue / 6.0) % 1.0)
    return np.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] to RGB, as `skimage.color.hsv2rgb` (six hue sectors)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = sector.astype(np.int64) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(sector, [c[k] for c in choices]) for k in range(3)], axis=-1)


def to_rgb(x: np.ndarray) -> np.ndarray:
    """(N, H, W, 1 or 3) -> (N, H, W, 3): grey images replicated into three channels."""
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def like_input(rgb: np.ndarray, channels: int) -> np.ndarray:
    """Back to the input's channels: (N, H, W, 3) -> luma (N, H, W, 1) for grey inputs."""
    return rgb if channels == 3 else (rgb @ LUMA)[..., None]
