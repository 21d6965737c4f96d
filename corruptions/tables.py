"""Per-data-set severity constants of the corruption generators (PROTOCOLS.md §3).

`imagenet` (224 px, ImageNet-C), `cifar` (32 px, CIFAR-10/100-C) and `tinyimagenet` (64 px,
Tiny-ImageNet-C) are the constants of Hendrycks & Dietterich's three reference generators.
`scaled(base, side)` is the documented rule for any other image size (e.g. the 8x8 digits):
the base table's constants are kept, except lengths in pixels (blur radii and sigmas, glass-blur
displacement, snow / spatter blur), which are multiplied by side / base side, and the frost
texture rescale factor, scaled the same way. Intensity constants (noise, weights, JPEG quality,
contrast, HSV shifts) and relative ones (zoom factors, pixelate factor, elastic fractions of the
side) need no change. With `cifar` at 8 px the weakest blurs become (near) identity, exactly as a
0.3 px blur is nearly invisible at 32 px.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from corruptions.catalog import ALL

_ZOOM_SMALL = [(1.06, .01), (1.11, .01), (1.16, .01), (1.21, .01), (1.26, .01)]

IMAGENET: dict[str, list[Any]] = {
    "gaussian_noise": [.08, .12, .18, .26, .38],
    "shot_noise": [60, 25, 12, 5, 3],
    "impulse_noise": [.03, .06, .09, .17, .27],
    "defocus_blur": [(3, .1), (4, .5), (6, .5), (8, .5), (10, .5)],
    "glass_blur": [(.7, 1, 2), (.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    "zoom_blur": [(1.11, .01), (1.16, .01), (1.21, .02), (1.26, .02), (1.31, .03)],
    "snow": [(.1, .3, 3, .5, 10, 4, .8), (.2, .3, 2, .5, 12, 4, .7),
             (.55, .3, 4, .9, 12, 8, .7), (.55, .3, 4.5, .85, 12, 8, .65),
             (.55, .3, 2.5, .85, 12, 12, .55)],
    "frost": [(1, .4), (.8, .6), (.7, .7), (.65, .7), (.6, .75)],
    "fog": [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)],
    "brightness": [.1, .2, .3, .4, .5],
    "contrast": [.4, .3, .2, .1, .05],
    "elastic_transform": [(2, .7, .1), (2, .08, .2), (.05, .01, .02), (.07, .01, .02),
                          (.12, .01, .02)],
    "pixelate": [.6, .5, .4, .3, .25],
    "jpeg_compression": [25, 18, 15, 10, 7],
    "speckle_noise": [.15, .2, .35, .45, .6],
    "gaussian_blur": [1, 2, 3, 4, 6],
    "spatter": [(.65, .3, 4, .69, .6, 0), (.65, .3, 3, .68, .6, 0), (.65, .3, 2, .68, .5, 0),
                (.65, .3, 1, .65, 1.5, 1), (.67, .4, 1, .65, 1.5, 1)],
    "saturate": [(.3, 0), (.1, 0), (2, 0), (5, .1), (20, .2)],
}

CIFAR: dict[str, list[Any]] = {
    "gaussian_noise": [.04, .06, .08, .09, .10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [.01, .02, .03, .05, .07],
    "defocus_blur": [(.3, .4), (.4, .5), (.5, .6), (1, .2), (1.5, .1)],
    "glass_blur": [(.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": _ZOOM_SMALL,
    "snow": [(.1, .2, 1, .6, 8, 3, .95), (.1, .2, 1, .5, 10, 4, .9),
             (.15, .3, 1.75, .55, 10, 4, .9), (.25, .3, 2.25, .6, 12, 6, .85),
             (.3, .3, 1.25, .65, 14, 12, .8)],
    "frost": [(1, .2), (1, .3), (.9, .4), (.85, .4), (.75, .45)],
    "fog": [(.2, 3), (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [.05, .1, .15, .2, .3],
    "contrast": [.75, .5, .4, .3, .15],
    "elastic_transform": [(0, 0, .08), (.05, .2, .07), (.08, .06, .06), (.1, .04, .05),
                          (.1, .03, .03)],
    "pixelate": [.95, .9, .85, .75, .65],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "speckle_noise": [.06, .1, .12, .16, .2],
    "gaussian_blur": [.4, .6, .7, .8, 1],
    "spatter": [(.62, .1, .7, .7, .5, 0), (.65, .1, .8, .7, .5, 0), (.65, .3, 1, .69, .5, 0),
                (.65, .1, .7, .69, .6, 1), (.65, .1, .5, .68, .6, 1)],
    "saturate": [(.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2)],
}

TINYIMAGENET: dict[str, list[Any]] = {
    "gaussian_noise": [.04, .08, .12, .15, .18],
    "shot_noise": [250, 100, 50, 30, 15],
    "impulse_noise": [.01, .02, .05, .08, .14],
    "defocus_blur": [(.5, .6), (1, .1), (1.5, .1), (2.5, .01), (3, .1)],
    "glass_blur": [(.1, 1, 1), (.5, 1, 1), (.6, 1, 2), (.7, 2, 1), (.9, 2, 2)],
    "motion_blur": [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)],
    "zoom_blur": _ZOOM_SMALL,
    "snow": [(.1, .2, 1, .6, 8, 3, .8), (.1, .2, 1, .5, 10, 4, .8),
             (.15, .3, 1.75, .55, 10, 4, .7), (.25, .3, 2.25, .6, 12, 6, .65),
             (.3, .3, 1.25, .65, 14, 12, .6)],
    "frost": [(1, .3), (.9, .4), (.8, .45), (.75, .5), (.7, .55)],
    "fog": [(.4, 3), (.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)],
    "brightness": [.1, .2, .3, .4, .5],
    "contrast": [.4, .3, .2, .1, .05],
    "elastic_transform": [(0, 0, .08), (.05, .3, .06), (.1, .08, .06), (.1, .03, .03),
                          (.16, .03, .02)],
    "pixelate": [.9, .8, .7, .6, .5],
    "jpeg_compression": [65, 58, 50, 40, 25],
    "speckle_noise": [.15, .2, .25, .3, .35],
    "gaussian_blur": [.5, .75, 1, 1.25, 1.5],
    "spatter": [(.62, .1, .7, .7, .6, 0), (.65, .1, .8, .7, .6, 0), (.65, .3, 1, .69, .6, 0),
                (.65, .1, .7, .68, .6, 1), (.65, .1, .5, .67, .6, 1)],
    "saturate": [(.3, 0), (.1, 0), (2, 0), (5, .1), (30, .2)],
}

# Which entries of each constant tuple are lengths in pixels (scaled by `scaled`).
_LENGTHS: dict[str, tuple[int, ...]] = {
    "defocus_blur": (0, 1), "glass_blur": (0, 1), "motion_blur": (0, 1), "snow": (4, 5),
    "gaussian_blur": (0,), "spatter": (2,),
}


@dataclass(frozen=True)
class SeverityTable:
    """Constants of one generator: `constants[corruption][severity - 1]`, made for `side` px.

    `frost_scale`: rescale factor of the frost textures before the random crop (1, 0.2, 0.3 in
    the references). `elastic_side`: the length the elastic fractions multiply, as a multiple of
    the image side (ImageNet-C used 244 for 224 px images: 244 / 224).
    """

    name: str
    side: int
    constants: dict[str, list[Any]]
    frost_scale: float
    elastic_side: float = 1.0
    scale: float = field(default=1.0)  # length multiplier applied by `scaled`

    def __post_init__(self) -> None:
        missing = sorted(set(ALL) - set(self.constants))
        if missing:
            raise ValueError(f"severity table {self.name!r}: no constants for {missing}")

    def params(self, corruption: str, severity: int, height: int, width: int) -> Any:
        """The constants of (corruption, severity) resolved for an image of height x width."""
        if severity not in (1, 2, 3, 4, 5):
            raise ValueError(f"severity must be 1..5, got {severity!r}")
        c = self.constants[corruption][severity - 1]
        if corruption in _LENGTHS:
            c = tuple(v * self.scale if i in _LENGTHS[corruption] else v for i, v in
                      enumerate(c if isinstance(c, tuple) else (c,)))
            if corruption == "glass_blur":  # displacement: whole pixels, at least one
                c = (c[0], max(1, round(c[1])), c[2])
            if corruption == "spatter" and c[5]:  # in mud mode the 5th constant is a sigma
                c = (*c[:4], c[4] * self.scale, c[5])
            if corruption == "gaussian_blur":
                c = c[0]
        if corruption == "zoom_blur":
            return np.arange(1, c[0], c[1])
        if corruption == "elastic_transform":
            base = self.elastic_side * min(height, width)
            return tuple(v * base for v in c)
        if corruption == "frost":
            return (*c, self.frost_scale * self.scale)
        return c


TABLES = {
    "imagenet": SeverityTable("imagenet", 224, IMAGENET, frost_scale=1.0,
                              elastic_side=244 / 224),
    "cifar": SeverityTable("cifar", 32, CIFAR, frost_scale=0.2),
    "tinyimagenet": SeverityTable("tinyimagenet", 64, TINYIMAGENET, frost_scale=0.3),
}


def scaled(base: str, side: int) -> SeverityTable:
    """Table `base` for images of `side` px: lengths and the frost scale times side / base side."""
    table = get_table(base)
    return replace(table, name=f"{table.name}@{side}", scale=table.scale * side / table.side)


def get_table(name: str | SeverityTable) -> SeverityTable:
    """A table by name: `imagenet`, `cifar`, `tinyimagenet`, or `<base>@<side>` (scaled)."""
    if isinstance(name, SeverityTable):
        return name
    if "@" in name:
        base, _, side = name.partition("@")
        if base in TABLES and side.isdigit() and int(side) > 0:
            return scaled(base, int(side))
    if name in TABLES:
        return TABLES[name]
    raise ValueError(f"unknown severity table {name!r}; use one of {', '.join(TABLES)} or "
                     "'<table>@<side>' (e.g. 'cifar@8')")
