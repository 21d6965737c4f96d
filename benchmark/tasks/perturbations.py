"""Occlusion, affine-deformation and in-between-class tasks (CutMix, Chun et al., PatchUp).

Each task reads the evaluation data once, batch by batch, and builds every perturbed copy of a
batch from it (cheap tensor ops) right before its forward pass; perturbations that leave the
images unchanged reuse the shared clean forward pass, and an all-fill image is evaluated once.
Per-image randomness comes from `corruptions.per_index` (seed, image index), so every checkpoint
of a run sees identical perturbed images whatever the batch size. No cache of perturbed images
is kept across checkpoints: building them costs a few percent of the forward passes (see
bench/bench_perturbations.py), less than a cache would save, and keeps memory flat.

Records: each task measures one sample table per perturbation, under exactly the conditions of
that perturbation's metric row (occlusion: mode, fill, hole_frac; affine: transform, magnitude;
inbetween: mix, lam and, for CutMix, box), `index` being the image's position in the evaluated
data. Occlusion and affine tables hold `classification_columns` (`correct`, `correct_top5` with more
than 5 classes, `pred`, `confidence`); inbetween tables hold `partner` (the index of the image
mixed in), `pred`, `confidence` and `neither` (predicted as neither source class). Cells that
reuse a shared pass (the clean pass, the all-fill image, a CutMix twin) repeat its outcomes.
The registered reductions compute every metric row from these tables alone.

Intervals (95 %): rates over the images (`top1_err`, `neither_rate`, `occlusion_err` at one hole
size) carry Wilson intervals; means over several perturbations of the same images (`mean_err`,
`occlusion_err` as the sweep mean) a bootstrap over images of each image's share of
misclassified perturbations (`Metric.image_mean`).
"""


from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.errors import SuiteError
from benchmark.params import param
from benchmark.records import Records
from benchmark.reductions.perturbations import (
    affine_conditions,
    affine_sets,
    floats,
    mix_conditions,
)
from benchmark.tasks.registry import (
    TaskContext,
    classification_columns,
    register_task,
    require_finite,
)
from corruptions.affine import affine, affine_params
from corruptions.inbetween import MIXES, PLACEMENTS, cut_boxes, cutmix, mixup, partners
from corruptions.occlusion import MODES, hole_box, occlude

FILLS = ("black", "mean")
Columns = dict[str, np.ndarray]


def _batches(ctx: TaskContext, desc: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    total = -(-len(ctx.data) // ctx.batch_size)
    return tqdm(ctx.data.batches(ctx.batch_size, ctx.device, ctx.num_workers), desc=desc,
                total=total, leave=False, disable=not ctx.progress)


def _outcomes(logits: torch.Tensor, labels: torch.Tensor) -> Columns:
    """`classification_columns` of a perturbed batch (non-finite logits are refused)."""
    return classification_columns(require_finite(logits, "on perturbed images"), labels)


def _joined(parts: list[Columns]) -> Columns:
    """Batches' columns joined in data order."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


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
                self.occ_err_frac) not in floats(self.hole_fracs)):
            raise SuiteError(f"parameter 'occ_err_frac' must be \"mean\" or one of hole_fracs "
                             f"{self.hole_fracs}; got {self.occ_err_frac!r}")


@register_task("occlusion", params=OcclusionParams, version=3)
def occlusion(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Top-1 error under centred center / boundary occlusion, swept over hole sizes.

    `hole_fracs`: hole side as a fraction of the image side (pixels: `corruptions.occlusion`,
    rounded half up, centred, half a pixel up/left when the border is odd). `modes`: `center`
    fills the hole, `boundary` fills outside it. `fill`: `mean` (default; the checkpoint's
    normalization mean, i.e. 0 after normalization: the papers "fill zeros", and Cutout's
    reference code cuts its holes in normalized tensors) or `black` (0 in pixel space).
    Records: one table per (mode, fill, hole_frac) of `classification_columns`.
    Metrics (percent): `top1_err` per (mode, fill, hole_frac); `mean_err` per mode = mean over
    the sweep (the normalized area under the error curve on a uniform grid); `occlusion_err`,
    the single "Occ." number of Chun et al. (2019) as rubench defines it: `occ_err_mode`
    (default center) at `occ_err_frac` — `mean` (default: the sweep mean, the `mean_err` row
    renamed, interval included) or one hole_frac (a Wilson rate).
    """
    fracs, modes = floats(params["hole_fracs"]), list(params["modes"])
    fill_name = params["fill"]
    if fill_name == "mean":
        if "mean" not in ctx.meta:
            raise SuiteError("task occlusion: fill = \"mean\" needs the checkpoint's "
                             "normalization mean, which its metadata lacks")
        fill = [float(v) for v in ctx.meta["mean"]]
    else:
        fill = [0.0]
    channels, height, width = ctx.data.image_shape()
    labels = ctx.labels()

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
    parts: dict[tuple[str, tuple[int, int, int, int]], list[Columns]] = {key: [] for key in passes}
    model = ctx.inference_model  # autocast at --precision
    with torch.inference_mode():
        if "pass" in kind.values():
            for images, targets in _batches(ctx, "occlusion"):
                for (mode, box), frac in passes.items():
                    parts[mode, box].append(_outcomes(model(occlude(images, frac, mode, fill)),
                                                      targets))
        clean = (classification_columns(ctx.clean_logits(), labels)
                 if "clean" in kind.values() else None)
        constant = None
        if "constant" in kind.values():
            blank = occlude(torch.zeros((1, channels, height, width), device=ctx.device), 1.0,
                            "center", fill)
            constant = classification_columns(
                require_finite(model(blank), "on an all-fill image"), labels)
    passed = {key: _joined(columns) for key, columns in parts.items()}
    records = Records()
    index = np.arange(len(labels), dtype=np.int64)
    for mode in modes:
        for frac in fracs:
            if kind[mode, frac] == "pass":
                columns = passed[mode, hole_box(frac, height, width)]
            else:
                columns = clean if kind[mode, frac] == "clean" else constant
            records.add({"mode": mode, "fill": fill_name, "hole_frac": frac}, index=index,
                        **columns)
    return records


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
def affine_deformations(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Top-1 error under PatchUp's affine sets: random rotation, random x-shear, fixed scale.

    `rotations` / `shears`: maximum angles a in degrees, each image drawing U(-a, a) once from
    (seed, image index); `scales`: fixed factors. Nearest interpolation, black fill, torchvision
    semantics (`corruptions.affine`). `scale_convention`: `torchvision` (default; scale 0.6
    shrinks the image, rows say transform = "scale") or `zoom` (Manifold Mixup's Zoom: 0.6
    magnifies, rows say transform = "zoom"). Records: one table per (transform, magnitude) of
    `classification_columns`. Metrics (percent): `top1_err` per (transform, magnitude) and
    `mean_err`, the mean over the sets (interval: a bootstrap over images of each image's share
    of sets it is misclassified in).
    """
    convention = params["scale_convention"]
    sets = affine_sets(params)
    n = len(ctx.data)
    everyone = np.arange(n)
    drawn = {s: affine_params(*s, everyone, ctx.seed, convention) for s in sets}
    parts: dict[tuple[str, float], list[Columns]] = {s: [] for s in sets}
    offset = 0
    model = ctx.inference_model  # autocast at --precision
    with torch.inference_mode():
        for images, targets in _batches(ctx, "affine"):
            part = slice(offset, offset + len(targets))
            for s in sets:
                angle, scale, shear = (v[part] for v in drawn[s])
                parts[s].append(_outcomes(model(affine(images, angle, scale, shear)),
                                          targets))
            offset += len(targets)
    records = Records()
    for s in sets:
        records.add(affine_conditions(*s, convention), index=everyone.astype(np.int64),
                    **_joined(parts[s]))
    return records


@dataclass(frozen=True)
class InbetweenParams:
    """See `inbetween`."""

    lams: list[float] = param([0.1, 0.2, 0.3, 0.4, 0.5], gt=0, le=0.5, nonempty=True,
                              distinct=True)
    mixes: list[str] = param(["mixup", "cutmix"], choices=MIXES, nonempty=True, distinct=True)
    box: str = param("inside", choices=PLACEMENTS)


@register_task("inbetween", params=InbetweenParams, version=2)
def inbetween(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Share of in-between-class samples (two classes mixed) predicted as neither class.

    Image i is paired with a seeded partner of another class (`corruptions.inbetween`); `mixes`:
    `mixup` (lam * x1 + (1 - lam) * x2) and `cutmix` (a box of area 1 - lam from x2 pasted into
    x1; `box`: `inside` (default, exact area up to pixel rounding) or `clipped` (CutMix's
    sampler)); `lams` in (0, 0.5]. Records: one table per (mix, lam) with `partner` (x2's
    index), `pred`, `confidence` and `neither`. Metric: `neither_rate` (percent) per (mix, lam).
    """
    lams, mixes, placement = floats(params["lams"]), list(params["mixes"]), params["box"]
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
    parts: dict[tuple[str, float], list[Columns]] = {key: [] for key in source.values()}
    second = ctx.data.subset(partner).batches(ctx.batch_size, ctx.device, ctx.num_workers)
    offset = 0
    model = ctx.inference_model  # autocast at --precision
    with torch.inference_mode():
        for (x1, y1), (x2, y2) in zip(_batches(ctx, "inbetween"), second, strict=True):
            part = slice(offset, offset + len(y1))
            for mix, lam in parts:
                mixed = mixup(x1, x2, lam) if mix == "mixup" else cutmix(x1, x2, boxes[lam][part])
                logits = require_finite(model(mixed), "on mixed images").float().cpu()
                pred, y1_cpu, y2_cpu = logits.argmax(dim=1), y1.cpu(), y2.cpu()
                parts[mix, lam].append({
                    "pred": pred.to(torch.int32).numpy(),
                    "confidence": torch.softmax(logits, dim=1).amax(dim=1).numpy(),
                    "neither": ((pred != y1_cpu) & (pred != y2_cpu)).numpy()})
            offset += len(y1)
    passed = {key: _joined(columns) for key, columns in parts.items()}
    records = Records()
    for (mix, lam), where in zip(source, mix_conditions(params), strict=True):
        records.add(where, index=everyone.astype(np.int64), partner=partner.astype(np.int32),
                    **passed[source[mix, lam]])
    return records
