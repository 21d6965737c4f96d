"""The `autoattack` task: AutoAttack's robust error through the authors' code (`pyautoattack`).

Parameters (validated when the suite loads):
- `version`: `standard` (APGD-CE, APGD-T with 9 target classes, FAB-T with 9, Square with 5,000
  queries: RobustBench's protocol; in L1, pyautoattack's L1 settings: APGD with 5 restarts and
  its large-eps schedule, 5 target classes), `plus`, `rand` (APGD-CE and APGD-DLR with EOT
  over 20 draws, for randomized models) or `custom` with `attacks` (a list among apgd-ce,
  apgd-dlr, fab, square, apgd-t, fab-t, run in that list's order).
- `norm` (`linf`, `l2`, `l1`), `eps` (a list, in [0, 1] pixel units: the model normalizes
  inside, so the budget is never in normalized units by mistake), `limit` (a seeded stratified
  subset, 0 = all), `seed` (the attacks' seed; unset: the run's seed; never time-based).
- `sweep`: `nested` (default) runs the budgets from the smallest up and attacks at a larger
  eps only the points still robust at every smaller one (a point broken at a smaller eps is
  broken at every larger one: its example lies in the larger ball), so the error is monotone
  in eps; `independent` runs each budget from the clean points, exactly as calling
  pyautoattack once per eps. The two agree at the smallest eps. At larger ones the nested error
  is not >= the independent one image by image (it is for rubench's PGD, whose random starts are
  per image): pyautoattack draws its random starts per batch, and the nested run's batches hold
  fewer points. RobustBench's protocol has one eps, where both are pyautoattack's run.
Points misclassified clean are never attacked (as in pyautoattack). Each stage attacks the
points still robust, compacted in batches of the run's batch size in selection order — the
same batches and seeds as `AutoAttack.run_standard_evaluation(x, y, batch_size=...)` on the
same points, hence the same adversarial examples image for image (within one eps; with a nested
sweep the later budgets see fewer points). The selection's images are held in memory, as
pyautoattack holds them.

Every table and metric row has the conditions `space` (pixel), `norm` and `ensemble` (the
version, or a custom list's attacks joined by '+': only `standard` is RobustBench's protocol).
Records: the model table as the other attack tasks' (`index`, `correct`, `randomized`,
`zero_grad`, `softmax_output`); one table per eps (condition `eps`): `correct` (still classified
right after every stage: the robust hit), `broken_by` (int8: 0 = misclassified clean, k = broken
by the k-th attack of the fact `attacks`, -1 = robust; with a nested sweep, a point broken at a
smaller eps keeps that stage), `pred` and `confidence` on the
point's adversarial example (the clean input where none was found). Facts: `engine`
(pyautoattack and its version), `version`, `attacks` (the stages in order), `sweep`, `seed`,
`dynamic` (AutoAttack's check for a forward pass that computes gradients) and
`engine_warnings` (what pyautoattack warned about, e.g. zero gradients).

Resumable: after each finished stage the unit's progress is written to `TaskContext.scratch`;
a re-run after a kill resumes after the last finished stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from attacks import sanity
from attacks.autoattack import (
    ATTACKS,
    ENGINE_NORMS,
    VERSIONS,
    Ensemble,
    captured_warnings,
    engine_version,
    is_dynamic,
)
from attacks.common import loss_gradient
from benchmark.errors import SuiteError
from benchmark.params import param
from benchmark.records import Records
from benchmark.tasks.attacks import (
    LINF_EPS,
    _fail,
    _ModelTable,
    _randomized,
    _select,
    _Selection,
    _space,
    passes_bar,
)
from benchmark.tasks.registry import TaskContext, register_task

TASK = "autoattack"
SWEEPS = ("nested", "independent")


@dataclass(frozen=True)
class AutoAttackParams:
    """AutoAttack's `version` (or `custom` `attacks`), `norm`, budgets `eps` (pixel units),
    `sweep`, `limit` and `seed` (unset: the run's)."""

    version: str = param("standard", choices=VERSIONS)
    attacks: list[str] = param([], choices=ATTACKS, distinct=True)
    norm: str = param("linf", choices=tuple(ENGINE_NORMS))
    eps: list[float] = param(LINF_EPS, gt=0, nonempty=True, distinct=True)
    sweep: str = param("nested", choices=SWEEPS)
    limit: int = param(0, ge=0)
    seed: int | None = param(None, ge=0)

    def __post_init__(self) -> None:
        if self.version == "custom" and not self.attacks:
            raise SuiteError(f"version 'custom' needs `attacks`, a list among "
                             f"{', '.join(ATTACKS)}")
        if self.version != "custom" and self.attacks:
            raise SuiteError(f"`attacks` is for version 'custom' only (version "
                             f"{self.version!r} runs its own list)")


def ensemble_name(version: str, attacks: list[str]) -> str:
    """The condition `ensemble` of every row: the version's name, or a custom list's attacks
    joined by '+' (so a custom run is never mistaken for the standard one)."""
    return "+".join(attacks) if version == "custom" else version


@dataclass
class _Progress:
    """One budget's per-point state in selection order, and how many stages are done."""

    eps: float
    robust: torch.Tensor  # bool
    broken_by: torch.Tensor  # int8
    pred: torch.Tensor  # int64
    confidence: torch.Tensor  # float32
    stages: int = 0
    warnings: list[str] = field(default_factory=list)  # what pyautoattack warned about

    def copy(self, eps: float) -> _Progress:
        """The same points at budget `eps`, no stage run yet (the nested sweep's start)."""
        return _Progress(eps, self.robust.clone(), self.broken_by.clone(), self.pred.clone(),
                         self.confidence.clone())


class _Resume:
    """Each budget's progress kept in the unit's scratch folder after every finished stage,
    with what else decides the attacks' results (points, batch size, device, engine), so a
    re-run with another setting starts afresh rather than mixing two runs."""

    def __init__(self, folder: Path | None, index: np.ndarray, setting: str) -> None:
        self.folder, self.index, self.setting = folder, index, setting

    def _path(self, position: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{TASK}-budget-{position}.npz"

    def load(self, position: int, eps: float) -> _Progress | None:
        """The stored progress of the `position`-th budget, if it is for these points."""
        if self.folder is None or not self._path(position).exists():
            return None
        with np.load(self._path(position)) as saved:
            if float(saved["eps"]) != eps or str(saved["setting"]) != self.setting \
                    or not np.array_equal(saved["index"], self.index):
                return None
            return _Progress(eps, torch.from_numpy(saved["robust"]),
                             torch.from_numpy(saved["broken_by"]),
                             torch.from_numpy(saved["pred"]),
                             torch.from_numpy(saved["confidence"]), int(saved["stages"]),
                             [str(w) for w in saved["warnings"]])

    def save(self, position: int, progress: _Progress) -> None:
        """Write the progress atomically (a kill mid-write leaves the previous one)."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(position)
        partial = path.with_suffix(".part.npz")
        np.savez(partial, eps=progress.eps, index=self.index, setting=self.setting,
                 robust=progress.robust.numpy(), broken_by=progress.broken_by.numpy(),
                 pred=progress.pred.numpy(), confidence=progress.confidence.numpy(),
                 stages=progress.stages, warnings=np.array(progress.warnings, dtype=str))
        os.replace(partial, path)


def _observe(ctx: TaskContext, selection: _Selection, seen: _ModelTable
             ) -> tuple[torch.Tensor, bool]:
    """The selection's images (CPU, selection order) while recording the model table's
    observations per batch; and AutoAttack's dynamic-defense check on the first batch."""
    images, dynamic = [], False
    for x, y, _, rows in selection.batches(ctx, TASK):
        adv_space = _space(ctx, TASK, "pixel", x)
        logits, grad = loss_gradient(ctx.model, x, y)
        seen.observe(rows, _randomized(adv_space, selection.clean_logits[rows], logits, rows),
                     sanity.zero_gradients(grad))
        if rows.start == 0:
            dynamic = is_dynamic(ctx.model, x)
        images.append(x.detach().cpu())
    return torch.cat(images), dynamic


def _check_classes(ensemble: Ensemble, num_classes: int, version: str) -> None:
    targets = ensemble.target_classes()
    if targets and targets + 1 > num_classes:
        raise _fail(TASK, f"version {version!r}: its targeted attacks use {targets} target "
                          f"classes, the model has {num_classes} classes (at most "
                          f"{num_classes - 1}); use version = 'custom' with `attacks` without "
                          "apgd-t / fab-t")


@register_task(TASK, params=AutoAttackParams, version=1)
def autoattack_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """AutoAttack (pyautoattack): robust error per eps over its ensemble, and after each attack."""
    norm, version, sweep = params["norm"], params["version"], params["sweep"]
    seed = ctx.seed if params["seed"] is None else int(params["seed"])
    budgets = [float(v) for v in params["eps"]]
    order = sorted(budgets) if sweep == "nested" else budgets
    selection = _select(ctx, TASK, params["limit"])
    ensembles = [Ensemble(ctx.model, norm=norm, eps=eps, version=version,
                          attacks=params["attacks"], seed=seed, device=ctx.device)
                 for eps in order]
    _check_classes(ensembles[0], int(selection.clean_logits.shape[1]), version)
    seen = _ModelTable(selection)
    images, dynamic = _observe(ctx, selection, seen)
    labels = selection.labels
    clean_pred = selection.clean_logits.argmax(dim=1)
    start = _Progress(0.0, ~seen.wrong1, torch.where(seen.wrong1, 0, -1).to(torch.int8),
                      clean_pred, torch.softmax(selection.clean_logits, dim=1).amax(dim=1))
    resume = _Resume(ctx.scratch, selection.index,
                     f"{engine_version()}, batch {ctx.batch_size}, {ctx.device.type}")
    done: dict[float, _Progress] = {}
    attacks = ensembles[0].attacks  # every budget's ensemble runs the same stages
    warnings: set[str] = set()
    previous = start
    with passes_bar(ctx.model, TASK, ctx.progress):
        for position, (eps, ensemble) in enumerate(zip(order, ensembles, strict=True)):
            base = previous if sweep == "nested" else start
            progress = resume.load(position, eps) or base.copy(eps)
            for stage, attack in enumerate(tqdm(attacks, desc=f"{TASK} eps={eps:g}",
                                                leave=False, disable=not ctx.progress),
                                           start=1):
                if stage <= progress.stages:
                    if attack == "fab-t":  # pyautoattack leaves FAB at one restart after it
                        ensemble.engine.fab.n_restarts = 1
                    continue
                points = torch.nonzero(progress.robust).flatten()
                if len(points):
                    with captured_warnings() as messages:
                        found = ensemble.stage(attack, images[points], labels[points],
                                               ctx.batch_size, f"task {TASK}")
                    progress.warnings += [m for m in messages if m not in progress.warnings]
                    hit = points[found.broken]
                    progress.robust[hit] = False
                    progress.broken_by[hit] = stage
                    progress.pred[hit] = found.pred
                    progress.confidence[hit] = found.confidence
                progress.stages = stage
                resume.save(position, progress)
            done[eps] = previous = progress
            warnings.update(progress.warnings)
    base = {"space": "pixel", "norm": norm, "ensemble": ensemble_name(version, attacks)}
    records = Records(facts={"engine": engine_version(), "version": version,
                             "attacks": attacks, "sweep": sweep, "seed": seed,
                             "dynamic": dynamic, "engine_warnings": sorted(warnings)})
    seen.add_table(records, base)
    index = selection.index.astype(np.int64)
    for eps in budgets:
        progress = done[eps]
        records.add({"eps": eps, **base}, index=index, correct=progress.robust.numpy(),
                    broken_by=progress.broken_by.numpy(),
                    pred=progress.pred.to(torch.int32).numpy(),
                    confidence=progress.confidence.float().numpy())
    return records
