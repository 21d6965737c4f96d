"""The 19 corruptions of Hendrycks & Dietterich (2019), their categories and AlexNet's errors;
and the -C-bar sets' corruptions (Mintun, Kirillov & Xie 2021), read from their released sets.

Generators added later (`corruptions.generate.register_corruption`) are selected by name only:
the groups stay what the released -C sets hold, and no summary averages them in.

The 15 benchmark corruptions (4 categories) enter mean corruption error and mCE; the 4 extra
("validation") corruptions are reported but never averaged into them. The -C-bar corruptions
(CIFAR-10-C-Bar's and ImageNet-C-Bar's ten, category `c_bar`) are in no -C group and no -C mean:
they have their own groups and category, and no generator (`select` refuses them unless asked).
"""

from __future__ import annotations

from collections.abc import Iterable

from benchmark.registry import registry

CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}
BENCHMARK_CATEGORIES = ("noise", "blur", "weather", "digital")
BENCHMARK: tuple[str, ...] = tuple(c for cat in BENCHMARK_CATEGORIES for c in CATEGORIES[cat])
EXTRA: tuple[str, ...] = CATEGORIES["extra"]
ALL: tuple[str, ...] = BENCHMARK + EXTRA  # also the index used to seed per-image randomness
CATEGORY_OF: dict[str, str] = {c: cat for cat, names in CATEGORIES.items() for c in names}
SEVERITIES = (1, 2, 3, 4, 5)

# The -C-bar sets (facebookresearch/augmentation-corruption, cifar10_c_bar.csv and
# imagenet_c_bar.csv, in their order and spelling): ten corruptions each, five shared.
C_BAR_SETS: dict[str, tuple[str, ...]] = {
    "cifar10_c_bar": ("blue_noise_sample", "checkerboard_cutout", "inverse_sparkles",
                      "pinch_and_twirl", "ripple", "brownish_noise", "circular_motion_blur",
                      "lines", "sparkles", "transverse_chromatic_abberation"),
    "imagenet_c_bar": ("caustic_refraction", "inverse_sparkles", "sparkles", "perlin_noise",
                       "blue_noise_sample", "plasma_noise", "checkerboard_cutout",
                       "cocentric_sine_waves", "single_frequency_greyscale", "brownish_noise"),
}
C_BAR: tuple[str, ...] = tuple(dict.fromkeys(c for names in C_BAR_SETS.values() for c in names))
C_BAR_CATEGORY = "c_bar"
# ImageNet-C-Bar's parameter of severities 1..5 (imagenet_c_bar.csv): the authors'
# make_imagenet_c_bar.py names each severity folder by it ("{:.2f}", e.g. `0.80/`), the released
# archive by the severity (`1/`).
IMAGENET_C_BAR_PARAMETERS: dict[str, tuple[float, ...]] = {
    "caustic_refraction": (2.35, 3.2, 4.9, 6.6, 9.15),
    "inverse_sparkles": (1.0, 2.0, 4.0, 9.0, 10.0),
    "sparkles": (1.0, 2.0, 3.0, 5.0, 6.0),
    "perlin_noise": (4.6, 5.2, 5.8, 7.6, 8.8),
    "blue_noise_sample": (0.8, 1.6, 2.4, 4.0, 5.6),
    "plasma_noise": (4.75, 7.0, 8.5, 9.25, 10.0),
    "checkerboard_cutout": (2.0, 3.0, 4.0, 5.0, 6.0),
    "cocentric_sine_waves": (3.0, 5.0, 8.0, 9.0, 10.0),
    "single_frequency_greyscale": (1.0, 1.5, 2.0, 4.5, 5.0),
    "brownish_noise": (1.0, 2.0, 3.0, 4.0, 5.0),
}

# AlexNet's top-1 error on ImageNet-C (0-1), mean over severities 1..5 (Hendrycks & Dietterich,
# hendrycks/robustness README); mCE needs only these sums over severities: sum = 5 * mean.
ALEXNET_ERR: dict[str, float] = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
    "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
    "speckle_noise": 0.845388, "gaussian_blur": 0.787108, "spatter": 0.717512,
    "saturate": 0.658248,
}
# AlexNet's clean ImageNet val top-1 error (torchvision's legacy table; the paper rounds to 43.5).
ALEXNET_CLEAN_ERR = 0.4345


def category_of(name: str) -> str:
    """A corruption's category: the catalog's (`c_bar` for the -C-bar ones), else its
    registration's (a plugin's)."""
    if name in CATEGORY_OF:
        return CATEGORY_OF[name]
    if name in C_BAR:
        return C_BAR_CATEGORY
    return str(registry("corruption").entry(name).info.get("category", "other"))


def is_released(name: str) -> bool:
    """Whether released sets hold `name`: the catalog's do (-C and -C-bar), a registered
    generator says so itself (`released=False` for plugins: they need a generated set)."""
    if name in ALL or name in C_BAR:
        return True
    return bool(registry("corruption").entry(name).info.get("released", False))


def c_bar_set(names: Iterable[str]) -> tuple[str, ...]:
    """The -C-bar set (CIFAR-10-C-Bar's or ImageNet-C-Bar's ten) all of whose corruptions are
    in `names`, else (): what the `c_bar` category's means average, as a -C category's."""
    present = set(names)
    return next((group for group in C_BAR_SETS.values() if present.issuperset(group)), ())


def select(corruptions: str | list[str] = "all", categories: list[str] | None = None,
           c_bar: bool = False) -> list[str]:
    """Corruption names: `"all"` (19), `"benchmark"` (15), `"extra"` (4), `"cifar10_c_bar"` or
    `"imagenet_c_bar"` (10) in catalog order, or a list of names (the catalog's in its order,
    then registered ones as listed), restricted to `categories` when given. The groups are what
    the released sets hold, whatever else is registered. Unknown names raise ValueError, and so
    do -C-bar ones unless `c_bar` (they are only read, from their released sets: no generator
    makes them)."""
    catalog = ALL + C_BAR
    if isinstance(corruptions, str):
        groups = {"all": ALL, "benchmark": BENCHMARK, "extra": EXTRA, **C_BAR_SETS}
        if corruptions not in groups:
            raise ValueError(f"corruptions: unknown group {corruptions!r}; use "
                             f"{', '.join(repr(g) for g in groups)} or a list of corruption "
                             "names")
        wanted = list(groups[corruptions])
    else:
        known = registry("corruption")
        unknown = sorted(set(corruptions) - set(catalog) - set(known.names()))
        if unknown:
            hints = "".join(known.hint(name, list(catalog)) for name in unknown)
            raise ValueError(f"corruptions: unknown name(s) {unknown}{hints}; known: "
                             f"{', '.join(dict.fromkeys([*catalog, *known.names()]))}")
        wanted = [c for c in catalog if c in corruptions] + \
            [c for c in dict.fromkeys(corruptions) if c not in catalog]
    bar = [c for c in wanted if c in C_BAR]
    if bar and not c_bar:
        raise ValueError(f"corruptions: rubench has no generator for the -C-bar corruptions "
                         f"({', '.join(bar)}); read them from their released set "
                         "(CIFAR-10-C-Bar, ImageNet-C-Bar)")
    if categories:
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"categories: unknown {unknown}; known: {', '.join(CATEGORIES)}")
        wanted = [c for c in wanted if category_of(c) in categories]
    return wanted
