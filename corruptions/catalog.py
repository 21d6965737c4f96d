"""The 19 corruptions of Hendrycks & Dietterich (2019), their categories and AlexNet's errors.

Generators added later (`corruptions.generate.register_corruption`) are selected by name only:
the groups stay what the released -C sets hold, and no summary averages them in.

The 15 benchmark corruptions (4 categories) enter mean corruption error and mCE; the 4 extra
("validation") corruptions are reported but never averaged into them.
"""

from __future__ import annotations

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
    """A corruption's category: the catalog's, else its registration's (a plugin's)."""
    if name in CATEGORY_OF:
        return CATEGORY_OF[name]
    return str(registry("corruption").entry(name).info.get("category", "other"))


def select(corruptions: str | list[str] = "all", categories: list[str] | None = None
           ) -> list[str]:
    """Corruption names: `"all"` (19), `"benchmark"` (15), `"extra"` (4) in catalog order, or a
    list of names (the catalog's in its order, then registered ones as listed), restricted to
    `categories` when given. The groups are what the released sets hold, whatever else is
    registered. Unknown names raise ValueError."""
    if isinstance(corruptions, str):
        groups = {"all": ALL, "benchmark": BENCHMARK, "extra": EXTRA}
        if corruptions not in groups:
            raise ValueError(f"corruptions: unknown group {corruptions!r}; use 'all', "
                             "'benchmark', 'extra' or a list of corruption names")
        wanted = list(groups[corruptions])
    else:
        known = registry("corruption")
        unknown = sorted(set(corruptions) - set(ALL) - set(known.names()))
        if unknown:
            hints = "".join(known.hint(name, list(ALL)) for name in unknown)
            raise ValueError(f"corruptions: unknown name(s) {unknown}{hints}; known: "
                             f"{', '.join(dict.fromkeys([*ALL, *known.names()]))}")
        wanted = [c for c in ALL if c in corruptions] + \
            [c for c in dict.fromkeys(corruptions) if c not in ALL]
    if categories:
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"categories: unknown {unknown}; known: {', '.join(CATEGORIES)}")
        wanted = [c for c in wanted if category_of(c) in categories]
    return wanted
