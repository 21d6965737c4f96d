"""Metrics of the perturbation tasks `occlusion`, `affine` and `inbetween` (see
`benchmark.tasks.perturbations` for the rows' definitions)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from benchmark.records import Records, SampleTable
from benchmark.reductions.core import register_metric
from benchmark.stats import Metric


def floats(values: list[float]) -> list[float]:
    """Parameter values as floats (TOML may give ints)."""
    return [float(v) for v in values]


def _wrong(table: SampleTable) -> np.ndarray:
    """Per sample of a table: misclassified (top-1)."""
    return ~table["correct"]


@register_metric("occlusion", "errors")
def occlusion_errors(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`top1_err` per (mode, fill, hole_frac) table (Wilson), `mean_err` per mode (image
    bootstrap of each image's share of failed hole sizes), `occlusion_err`."""
    fracs, modes = floats(params["hole_fracs"]), list(params["modes"])
    fill_name, err_mode, err_frac = params["fill"], params["occ_err_mode"], params["occ_err_frac"]
    cells = {(mode, frac): _wrong(records.one(mode=mode, fill=fill_name, hole_frac=frac))
             for mode in modes for frac in fracs}
    metrics = [Metric.rate("top1_err", int(np.count_nonzero(wrong)), len(wrong), conditions={
        "mode": mode, "fill": fill_name, "hole_frac": frac})
        for (mode, frac), wrong in cells.items()]
    means = {mode: Metric.image_mean("mean_err", np.mean([cells[mode, f] for f in fracs], axis=0),
                                     seed, conditions={"mode": mode, "fill": fill_name})
             for mode in modes}
    metrics += means.values()
    if err_frac == "mean":
        metrics.append(replace(means[err_mode], metric="occlusion_err",
                               conditions=dict(means[err_mode].conditions)))
    else:
        wrong = cells[err_mode, float(err_frac)]
        metrics.append(Metric.rate("occlusion_err", int(np.count_nonzero(wrong)), len(wrong),
                                   conditions={"mode": err_mode, "fill": fill_name,
                                               "hole_frac": float(err_frac)}))
    return metrics


def affine_sets(params: dict[str, Any]) -> list[tuple[str, float]]:
    """(transform, magnitude) of every set, in row order."""
    return [(transform, m) for transform, key in (("rotation", "rotations"),
                                                  ("shear", "shears"), ("scale", "scales"))
            for m in floats(params[key])]


def affine_conditions(transform: str, magnitude: float, convention: str) -> dict[str, Any]:
    """A set's conditions: scales are named `zoom` under the zoom convention."""
    name = "zoom" if transform == "scale" and convention == "zoom" else transform
    return {"transform": name, "magnitude": magnitude}


@register_metric("affine", "errors")
def affine_errors(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`top1_err` per (transform, magnitude) table (Wilson); `mean_err` over the sets (image
    bootstrap of each image's share of sets it is misclassified in)."""
    conditions = [affine_conditions(*s, params["scale_convention"])
                  for s in affine_sets(params)]
    wrong = [_wrong(records.one(**where)) for where in conditions]
    metrics = [Metric.rate("top1_err", int(np.count_nonzero(w)), len(w), conditions=where)
               for where, w in zip(conditions, wrong, strict=True)]
    metrics.append(Metric.image_mean("mean_err", np.mean(wrong, axis=0), seed))
    return metrics


def mix_conditions(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Each (mix, lam)'s conditions, in row order; CutMix's name its box placement."""
    return [{"mix": mix, "lam": lam, **({"box": params["box"]} if mix == "cutmix" else {})}
            for mix in params["mixes"] for lam in floats(params["lams"])]


@register_metric("inbetween", "errors")
def inbetween_errors(records: Records, params: dict[str, Any], seed: int) -> list[Metric]:
    """`neither_rate` per (mix, lam) table (Wilson)."""
    metrics = []
    for where in mix_conditions(params):
        neither = records.one(**where)["neither"]
        metrics.append(Metric.rate("neither_rate", int(np.count_nonzero(neither)), len(neither),
                                   conditions=where))
    return metrics
