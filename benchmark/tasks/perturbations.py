"""Occlusion, affine-deformation and in-between-class tasks (CutMix, Chun et al., PatchUp).

Each task reads the evaluation data once, batch by batch, and builds every perturbed copy of a
batch from it (cheap tensor ops) right before its forward pass; perturbations that leave the
images unchanged reuse the shared clean forward pass, and an all-fill image is evaluated once.
Per-image randomness comes from `corruptions.per_index` (seed, image index), so every checkpoint
of a run sees identical perturbed images whatever the batch size. No cache of perturbed images
is kept across checkpoints: building them costs a few percent of the forward passes (see
bench/bench_perturbations.py), less than a cache would save, and keeps memory flat.

Intervals (95 %): rates over the images (`top1_err`, `neither_rate`, `occlusion_err` at one hole
size) carry Wilson intervals; means over several perturbations of the same images (`mean_err`,
`occlusion_err` as the sweep mean) a bootstrap over images of each image's share of
misclassified perturbations (`Metric.image_mean`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.errors import SuiteError
from benchmark.params import param
from benchmark.stats import Metric
from benchmark.tasks.registry import TaskContext, register_task, require_finite
from corruptions.affine import affine, affine_params
from corruptions.inbetween import (
    MIXES,
    PLACEMENTS,
    cut_boxes,
    cutmix,
    mixup,
    neither_count,
    partners,
)
from corruptions.occlusion import MODES, hole_box, occlude

FILLS = ("black", "mean")


def _floats(values: list[float]) -> list[float]:
    return [float(v) for v in values]


def _batches(ctx: TaskContext, desc: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    total = -(-len(ctx.data) // ctx.batch_size)
    return tqdm(ctx.data.batches(ctx.batch_size, ctx.device, ctx.num_workers), desc=desc,
                total=total, leave=False, disable=not ctx.progress)


def _wrong(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per image: the top-1 prediction is not the label (non-finite logits are refused)."""
    return (require_finite(logits, "on perturbed images").argmax(dim=1) != labels).cpu().numpy()


@dataclass(frozen=True)
class OcclusionParams:
    """See `occlusion`."""

    hole_fracs: list[float] = param([0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0],
                                    ge=0, le=1, nonempty=True, distinct=True)
    modes: list[str] = param(["center", "boundary"], choices=MODES, nonempty=True,
                             distinct=True)
    fill: str = param("mean", choices=FILLS)
    occ_err_mode: str = param("center", choices=MODES)
    occ_err_frac: str | float = param("mean")

    def __post_init__(self) -> None:
        if self.occ_err_mode not in self.modes:
            raise SuiteError(f"parameter 'occ_err_mode' = {self.occ_err_mode!r} is not among "
                             f"modes {self.modes}")
        if self.occ_err_frac != "mean" and (isinstance(self.occ_err_frac, str) or float(
                self.occ_err_frac) not in _floats(self.hole_fracs)):
            raise SuiteError(f"parameter 'occ_err_frac' must be \"mean\" or one of hole_fracs "
                             f"{self.hole_fracs}; got {self.occ_err_frac!r}")


@register_task("occlusion", params=OcclusionParams, version=3)
def occlusion(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Top-1 error under centred center / boundary occlusion, swept over hole sizes.

    `hole_fracs`: hole side as a fraction of the image side (pixels: `corruptions.occlusion`,
    rounded half up, centred, half a pixel up/left when the border is odd). `modes`: `center`
    fills the hole, `boundary` fills outside it. `fill`: `mean` (default; the checkpoint's
    normalization mean, i.e. 0 after normalization: the papers "fill zeros", and Cutout's
    reference code cuts its holes in normalized tensors) or `black` (0 in pixel space).
    Metrics (percent): `top1_err` per (mode, fill, hole_frac); `mean_err` per mode = mean over
    the sweep (the normalized area under the error curve on a uniform grid); `occlusion_err`,
    the single "Occ." number of Chun et al. (2019) as rubench defines it: `occ_err_mode`
    (default center) at `occ_err_frac` — `mean` (default: the sweep mean, the `mean_err` row
    renamed, interval included) or one hole_frac (a Wilson rate).
    """
    fracs, modes = _floats(params["hole_fracs"]), list(params["modes"])
    fill_name, err_mode, err_frac = params["fill"], params["occ_err_mode"], params["occ_err_frac"]
    if fill_name == "mean":
        if "mean" not in ctx.meta:
            raise SuiteError("task occlusion: fill = \"mean\" needs the checkpoint's "
                             "normalization mean, which its metadata lacks")
        fill = [float(v) for v in ctx.meta["mean"]]
    else:
        fill = [0.0]
    channels, height, width = ctx.data.image_shape()
    labels = ctx.labels()
    n = len(labels)

    # Which (mode, frac) leave the image unchanged, make it all fill, or need their own pass;
    # fracs that round to the same hole share one pass.
    kind: dict[tuple[str, float], str] = {}
    passes: dict[tuple[str, tuple[int, int, int, int]], float] = {}
    for mode in modes:
        for frac in fracs:
            top, bottom, left, right = box = hole_box(frac, height, width)
            hole = (bottom - top) * (right - left)
            if hole in (0, height * width):  # no hole or no border: clean or all fill
                kind[mode, frac] = "clean" if (hole == 0) == (mode == "center") else "constant"
            else:
                kind[mode, frac] = "pass"
                passes.setdefault((mode, box), frac)
    wrong = {key: np.zeros(n, dtype=bool) for key in passes}  # per image, per pass
    with torch.inference_mode():
        if "pass" in kind.values():
            offset = 0
            for images, targets in _batches(ctx, "occlusion"):
                part = slice(offset, offset + len(targets))
                for (mode, box), frac in passes.items():
                    wrong[mode, box][part] = _wrong(ctx.model(occlude(images, frac, mode, fill)),
                                                    targets)
                offset += len(targets)
        clean_wrong = _wrong(ctx.clean_logits(), labels) if "clean" in kind.values() else None
        constant_wrong = None
        if "constant" in kind.values():
            blank = occlude(torch.zeros((1, channels, height, width), device=ctx.device), 1.0,
                            "center", fill)
            blank_logits = require_finite(ctx.model(blank), "on an all-fill image")
            constant_wrong = (labels != blank_logits.argmax(dim=1).cpu()).numpy()

    metrics, cells = [], {}
    for mode in modes:
        for frac in fracs:
            if kind[mode, frac] == "clean":
                cells[mode, frac] = clean_wrong
            elif kind[mode, frac] == "constant":
                cells[mode, frac] = constant_wrong
            else:
                cells[mode, frac] = wrong[mode, hole_box(frac, height, width)]
            metrics.append(Metric.rate("top1_err", int(cells[mode, frac].sum()), n, conditions={
                "mode": mode, "fill": fill_name, "hole_frac": frac}))
    means = {mode: Metric.image_mean("mean_err", np.mean([cells[mode, f] for f in fracs], axis=0),
                                     ctx.seed, conditions={"mode": mode, "fill": fill_name})
             for mode in modes}
    metrics += means.values()
    if err_frac == "mean":
        metrics.append(replace(means[err_mode], metric="occlusion_err",
                               conditions=dict(means[err_mode].conditions)))
    else:
        metrics.append(Metric.rate("occlusion_err", int(cells[err_mode, float(err_frac)].sum()),
                                   n, conditions={"mode": err_mode, "fill": fill_name,
                                                  "hole_frac": float(err_frac)}))
    return metrics


@dataclass(frozen=True)
class AffineParams:
    """See `affine_deformations`."""

    rotations: list[float] = param([20.0, 40.0], ge=0, le=180, distinct=True)
    shears: list[float] = param([28.6, 57.3], ge=0, le=89, distinct=True)
    scales: list[float] = param([0.6, 0.8, 1.2, 1.4], gt=0, le=100, distinct=True)
    scale_convention: str = param("torchvision", choices=("torchvision", "zoom"))

    def __post_init__(self) -> None:
        if not (self.rotations or self.shears or self.scales):
            raise SuiteError("no set to evaluate: rotations, shears and scales are all empty")


@register_task("affine", params=AffineParams, version=3)
def affine_deformations(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Top-1 error under PatchUp's affine sets: random rotation, random x-shear, fixed scale.

    `rotations` / `shears`: maximum angles a in degrees, each image drawing U(-a, a) once from
    (seed, image index); `scales`: fixed factors. Nearest interpolation, black fill, torchvision
    semantics (`corruptions.affine`). `scale_convention`: `torchvision` (default; scale 0.6
    shrinks the image, rows say transform = "scale") or `zoom` (Manifold Mixup's Zoom: 0.6
    magnifies, rows say transform = "zoom"). Metrics (percent): `top1_err` per (transform,
    magnitude) and `mean_err`, the mean over the sets (interval: a bootstrap over images of
    each image's share of sets it is misclassified in).
    """
    convention = params["scale_convention"]
    sets = [(transform, m) for transform, key in (("rotation", "rotations"), ("shear", "shears"),
                                                  ("scale", "scales"))
            for m in _floats(params[key])]
    n = len(ctx.data)
    everyone = np.arange(n)
    drawn = {s: affine_params(*s, everyone, ctx.seed, convention) for s in sets}
    wrong = {s: np.zeros(n, dtype=bool) for s in sets}  # per image, per set
    offset = 0
    with torch.inference_mode():
        for images, targets in _batches(ctx, "affine"):
            part = slice(offset, offset + len(targets))
            for s in sets:
                angle, scale, shear = (v[part] for v in drawn[s])
                wrong[s][part] = _wrong(ctx.model(affine(images, angle, scale, shear)), targets)
            offset += len(targets)
    metrics = []
    for transform, magnitude in sets:
        name = "zoom" if transform == "scale" and convention == "zoom" else transform
        metrics.append(Metric.rate("top1_err", int(wrong[transform, magnitude].sum()), n,
                                   conditions={"transform": name, "magnitude": magnitude}))
    metrics.append(Metric.image_mean("mean_err", np.mean(list(wrong.values()), axis=0),
                                     ctx.seed))
    return metrics


@dataclass(frozen=True)
class InbetweenParams:
    """See `inbetween`."""

    lams: list[float] = param([0.1, 0.2, 0.3, 0.4, 0.5], gt=0, le=0.5, nonempty=True,
                              distinct=True)
    mixes: list[str] = param(["mixup", "cutmix"], choices=MIXES, nonempty=True, distinct=True)
    box: str = param("inside", choices=PLACEMENTS)


@register_task("inbetween", params=InbetweenParams, version=2)
def inbetween(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Share of in-between-class samples (two classes mixed) predicted as neither class.

    Image i is paired with a seeded partner of another class (`corruptions.inbetween`); `mixes`:
    `mixup` (lam * x1 + (1 - lam) * x2) and `cutmix` (a box of area 1 - lam from x2 pasted into
    x1; `box`: `inside` (default, exact area up to pixel rounding) or `clipped` (CutMix's
    sampler)); `lams` in (0, 0.5]. Metric: `neither_rate` (percent) per (mix, lam).
    """
    lams, mixes, placement = _floats(params["lams"]), list(params["mixes"]), params["box"]
    _, height, width = ctx.data.image_shape()
    labels = ctx.data.labels
    n = len(labels)
    partner = partners(labels, ctx.seed)
    everyone = np.arange(n)
    boxes = {lam: cut_boxes(everyone, height, width, lam, ctx.seed, placement) for lam in lams}
    # CutMix ratios whose boxes round to the same pixels (small images) share a forward pass
    source = {}
    for mix in mixes:
        for i, lam in enumerate(lams):
            twin = next((prev for prev in lams[:i] if mix == "cutmix"
                         and np.array_equal(boxes[prev], boxes[lam])), lam)
            source[mix, lam] = (mix, twin)
    neither = dict.fromkeys(source.values(), 0)
    second = ctx.data.subset(partner).batches(ctx.batch_size, ctx.device, ctx.num_workers)
    offset = 0
    with torch.inference_mode():
        for (x1, y1), (x2, y2) in zip(_batches(ctx, "inbetween"), second, strict=True):
            part = slice(offset, offset + len(y1))
            for mix, lam in neither:
                mixed = mixup(x1, x2, lam) if mix == "mixup" else cutmix(x1, x2, boxes[lam][part])
                neither[mix, lam] += neither_count(
                    require_finite(ctx.model(mixed), "on mixed images").argmax(dim=1), y1, y2)
            offset += len(y1)
    return [Metric.rate("neither_rate", neither[source[mix, lam]], n, conditions={
        "mix": mix, "lam": lam, **({"box": placement} if mix == "cutmix" else {})})
        for mix, lam in source]
