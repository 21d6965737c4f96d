"""Generate the 19 corruptions for any image set: batched, size-aware, seeded per image.

`corrupt(images, corruption, severity, table=...)` corrupts a uint8 (N, H, W, C) batch (C = 1
or 3) with the constants of a severity table (`corruptions.tables`). Image i's randomness comes
from `np.random.default_rng([seed, corruption index, severity, indices[i]])` only, so its
result does not depend on batch size, order or worker count. Floats are truncated to uint8, as
the reference generators do (`np.uint8(x)`).

Against `imagecorruptions` 1.1.2 on the ImageNet table (tests/test_corruptions_oracle.py, an
astronaut photo, severities 1-5): defocus, zoom and gaussian blur, brightness, contrast,
saturate, JPEG and pixelate (with `pixelate_upsample="nearest"`) are identical value for value;
fed the same random numbers, gaussian / shot / speckle noise, glass and motion blur, snow and fog
are identical too, and mud spatter (severities 4-5) is within 1 grey level on < 0.02 % of
values (OpenCV float32 arithmetic). Different by design: pixelate upsamples with a box filter
by default, as Hendrycks' generators did for the released sets; elastic is Hendrycks' (with the
table's constants; checked within 1 grey level against OpenCV's warp); frost rescales its
textures per table as Hendrycks' generators. Impulse noise (scikit-image's own random stream),
water spatter (OpenCV's Canny) and frost agree in distribution.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from benchmark.registry import registry
from corruptions import blur, digital, noise, weather
from corruptions.catalog import ALL, CATEGORY_OF, SEVERITIES
from corruptions.tables import SeverityTable, get_table
from corruptions.weather import FrostTextures

CORRUPTIONS = registry("corruption")
Generator = Callable[..., np.ndarray]  # (images, constant, rngs, **options) -> images
for _name, _function in {
    "gaussian_noise": noise.gaussian_noise, "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise, "defocus_blur": blur.defocus_blur,
    "glass_blur": blur.glass_blur, "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur, "snow": weather.snow, "frost": weather.frost,
    "fog": weather.fog, "brightness": weather.brightness, "contrast": digital.contrast,
    "elastic_transform": digital.elastic_transform, "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression, "speckle_noise": noise.speckle_noise,
    "gaussian_blur": blur.gaussian_blur, "spatter": weather.spatter,
    "saturate": digital.saturate,
}.items():
    # every one of Hendrycks & Dietterich's 19 is in the released -C sets; a generator added
    # later registers released=False, so released sets' default groups never change
    CORRUPTIONS.add(_name, _function, f"{CATEGORY_OF[_name]} corruption (Hendrycks & "
                                      "Dietterich 2019)", category=CATEGORY_OF[_name],
                    released=True)


def register_corruption(name: str, severities: Sequence[Any], category: str = "other",
                        description: str = "") -> Callable[[Generator], Generator]:
    """Register a corruption generator `fn(images, constant, rngs) -> images` (uint8
    (N, H, W, C) in, values clipped and truncated to uint8 after; `rngs` one generator per
    image) with its five severity constants (used as given, for every image size). It is
    never in a released set (`released=False`): suites select it by name, on generated sets."""
    if len(severities) != len(SEVERITIES):
        raise ValueError(f"corruption {name!r}: {len(SEVERITIES)} severity constants needed, "
                         f"got {len(severities)}")
    return CORRUPTIONS.register(name, description, category=category, released=False,
                                severities=tuple(severities))


def _code(corruption: str) -> int:
    """The corruption's number in the per-image seeds: its catalog index, else (a plugin) a
    stable number from its name beyond the catalog's."""
    if corruption in ALL:
        return ALL.index(corruption)
    return len(ALL) + zlib.crc32(corruption.encode())


def image_rngs(seed: int, corruption: str, severity: int, indices: Sequence[int]
               ) -> list[np.random.Generator]:
    """One generator per image, from (seed, the corruption's number, severity, index)."""
    code = _code(corruption)
    return [np.random.default_rng([seed, code, severity, int(i)]) for i in indices]


def corrupt(images: np.ndarray, corruption: str, severity: int,
            table: str | SeverityTable = "imagenet", seed: int = 0,
            indices: Sequence[int] | None = None, rngs: Sequence | None = None,
            frost_textures: FrostTextures | None = None, pixelate_upsample: str = "box"
            ) -> np.ndarray:
    """`images` (uint8 (N, H, W[, C])) corrupted at `severity`; uint8, same shape.

    `indices` are the images' positions in their data set (default 0..N-1) for the per-image
    seeds; `rngs` replaces those generators (anything with the `numpy.random.Generator` methods
    used, e.g. to replay another library's random stream in tests). `frost_textures` default to
    the synthetic ones; `pixelate_upsample` is `box` (Hendrycks) or `nearest`.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}{CORRUPTIONS.hint(corruption)}; "
                         f"known: {', '.join(CORRUPTIONS.names())}")
    array = np.asarray(images)
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in [0, 255], got {array.dtype}")
    squeeze = array.ndim == 3
    if squeeze:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, 1 or 3), got {array.shape}")
    n, h, w, _ = array.shape
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity!r}")
    params = get_table(table).params(corruption, severity, h, w) if corruption in ALL else \
        CORRUPTIONS.entry(corruption).info["severities"][severity - 1]
    if rngs is None:
        rngs = image_rngs(seed, corruption, severity, range(n) if indices is None else indices)
    if len(rngs) != n:
        raise ValueError(f"{len(rngs)} generators / indices for {n} images")
    extra = {}
    if corruption == "frost":
        extra["textures"] = frost_textures
    elif corruption == "pixelate":
        extra["upsample"] = pixelate_upsample
    out = CORRUPTIONS.get(corruption)(array, params, rngs, **extra)
    out = np.clip(out, 0, 255).astype(np.uint8)  # truncation, as the references
    return out[..., 0] if squeeze else out


def corrupt_all(images: np.ndarray, table: str | SeverityTable, seed: int = 0,
                corruptions: Sequence[str] = ALL, severities: Sequence[int] = SEVERITIES,
                batch_size: int = 256, frost_textures: FrostTextures | None = None,
                pixelate_upsample: str = "box"
                ) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield (corruption, severity, uint8 images) for every pair, in batches of `batch_size`
    (the result does not depend on it)."""
    for corruption in corruptions:
        for severity in severities:
            parts = [corrupt(images[start:start + batch_size], corruption, severity, table,
                             seed, indices=range(start, min(start + batch_size, len(images))),
                             frost_textures=frost_textures, pixelate_upsample=pixelate_upsample)
                     for start in range(0, len(images), batch_size)]
            yield corruption, severity, np.concatenate(parts)
