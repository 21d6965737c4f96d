"""Adversarial robustness tasks: fgsm, ifgsm, pgd, deepfool, cw, ddn, transfer, with sanity flags.

Conventions (each a parameter with a named default):
- `eps`: a list; one task run sweeps it. Units are those of `space`: `pixel` (default; [0, 1]
  images, the model's normalization inside the wrapper) or `normalized` (PatchUp: eps on
  (x - mean) / std, clamped to the batch's min / max). Fixed-budget tasks (fgsm, ifgsm, pgd,
  transfer) report `top1_err` (and `top5_err` with more than 5 classes) per eps.
  Minimal-perturbation tasks (deepfool, cw, ddn) report `median_norm` (the lower median over all
  points: 0 for points misclassified when clean, +inf for points the attack did not break),
  `fail_rate` (percent of points not broken) and `top1_err` at each eps threshold (points broken
  within eps).
- Intervals (95 %): every error rate (`top1_err`, `top5_err`, `fgsm_top1_err`, `fail_rate`,
  `zero_grad_rate`) is a count over the attacked points and carries its Wilson interval.
  `median_norm` carries the distribution-free order-statistic interval of a median (exact
  binomial, conservative with ties), left out where a bound is +inf or n < 6.
- A point the model already misclassifies (top-1, resp. top-5) counts as an error under attack.
- Conditions: `eps`, `space`, `norm` (`linf` / `l2`); transfer adds `attack` and `surrogate`.
- `loss`: `ce` (default) or `bce` (Manifold Mixup's BCE on softmax vs one-hot).
- Step size: `step_factor` * eps / steps, absolute (PGD 2.5, I-FGSM 1.0; foolbox's relative
  step r is step_factor = r * steps).
- `limit`: attack a seeded class-stratified subset of this size (0 = every evaluated image).
- Random starts depend only on (run seed, sample position in the evaluated data, restart), so
  numbers do not depend on batch size — except in `normalized` space (bounds are the batch's
  min / max) and for `cw` with `abort_early` (foolbox stops on the batch's summed loss).

Every adversarial batch is checked (finite, inside the bounds, norm <= eps + 1e-6 in the attack's
norm and space); a violation fails the task with `attacks.BudgetError`. Sanity flags are metrics
with value 0/1 (1 = suspicious; `higher_is_better` false):
- `flag_below_clean` (per eps): the error on the adversarial inputs alone (without counting
  clean mistakes) is below the clean error — the attack made the model more accurate.
- `flag_below_fgsm` (pgd, ifgsm; per eps): error below the one-step attack's (FGSM; for L2 the
  L2 fast gradient method) at the same eps; that error is `fgsm_top1_err`.
- `flag_not_monotone` (fixed-budget tasks): top-1 error drops somewhere as eps grows.
- `flag_zero_grad` (white-box tasks): some correctly classified point has an exactly-zero input
  gradient of the loss (gradient masking); `zero_grad_rate` is their share of all points (%).
- `flag_randomized`: a forward pass differs from the shared clean pass on the same images, or
  two passes in a row differ (dropout or noise at test time); `flag_softmax_output`: the
  outputs are already probabilities. Non-finite outputs fail the task (`require_finite`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from scipy import stats
from tqdm.auto import tqdm

from attacks import sanity
from attacks.common import (
    LOSSES,
    NORMS,
    SPACES,
    AttackSpace,
    attack_space,
    check_adversarial,
    input_gradient,
    loss_gradient,
)
from attacks.gradient import fgm, ifgsm, pgd
from attacks.minimal import MinimalResult, carlini_wagner, ddn, deepfool
from benchmark.checkpoints import load_model, make_ref, sha256_file
from benchmark.data import EvalData, stratified_subset
from benchmark.errors import SuiteError
from benchmark.params import defaults, param, validate
from benchmark.stats import Metric
from benchmark.tasks.registry import TaskContext, TaskPlaces, register_task, require_finite

LINF_EPS = [8 / 255]  # the CIFAR Linf budget (RobustBench)
L2_EPS = [0.5]  # the CIFAR L2 budget


# ---------------------------------------------------------------- parameter schemas


@dataclass(frozen=True)
class AttackParams:
    """Parameters every attack task has: the attack `space` and `limit` (a seeded stratified
    subset of the evaluated images; 0 = all)."""

    space: str = param("pixel", choices=SPACES)
    limit: int = param(0, ge=0)


@dataclass(frozen=True)
class FgsmParams(AttackParams):
    """FGSM: the budgets `eps` and the `loss`."""

    eps: list[float] = param(LINF_EPS, ge=0, nonempty=True, distinct=True)
    loss: str = param("ce", choices=LOSSES)


@dataclass(frozen=True)
class IfgsmParams(FgsmParams):
    """I-FGSM: `steps` of step_factor * eps / steps."""

    steps: int = param(10, ge=1)
    step_factor: float = param(1.0, gt=0)


@dataclass(frozen=True)
class PgdParams(IfgsmParams):
    """PGD: also the `norm`, seeded `random_start` and `restarts` (worst case kept)."""

    step_factor: float = param(2.5, gt=0)
    norm: str = param("linf", choices=NORMS)
    restarts: int = param(1, ge=1)
    random_start: bool = param(True)

    def __post_init__(self) -> None:
        if self.restarts > 1 and not self.random_start:
            raise SuiteError("restarts > 1 needs random_start = true")


@dataclass(frozen=True)
class MinimalParams(AttackParams):
    """A minimal-perturbation attack: its error is also reported at each budget in `eps`."""

    eps: list[float] = param(L2_EPS, ge=0, nonempty=True, distinct=True)


@dataclass(frozen=True)
class DeepFoolParams(MinimalParams):
    """DeepFool, foolbox's defaults."""

    norm: str = param("l2", choices=NORMS)
    steps: int = param(50, ge=1)
    candidates: int = param(10, ge=2)
    overshoot: float = param(0.02, ge=0)


@dataclass(frozen=True)
class CwParams(MinimalParams):
    """Carlini-Wagner L2, foolbox's defaults."""

    binary_search_steps: int = param(9, ge=1)
    steps: int = param(10000, ge=1)
    stepsize: float = param(0.01, gt=0)
    confidence: float = param(0.0, ge=0)
    initial_const: float = param(1e-3, gt=0)
    abort_early: bool = param(True)


@dataclass(frozen=True)
class DdnParams(MinimalParams):
    """DDN (L2)."""

    steps: int = param(100, ge=1)
    init_epsilon: float = param(1.0, gt=0)
    gamma: float = param(0.05, gt=0)


GRADIENT_ATTACKS = {"fgsm": FgsmParams, "ifgsm": IfgsmParams, "pgd": PgdParams}


@dataclass(frozen=True)
class TransferParams(FgsmParams):
    """Black-box transfer: the `surrogate` checkpoint (a path, absolute or relative to the
    checkpoint directory; or --surrogate), the `attack` crafted on it and its `attack_params`
    (steps, step_factor, ...: the parameters of that attack's own task)."""

    surrogate: str = param("")
    attack: str = param("fgsm", choices=tuple(GRADIENT_ATTACKS))
    attack_params: dict[str, Any] = param({})

    def __post_init__(self) -> None:
        schema = GRADIENT_ATTACKS[self.attack]
        own = set(_own_params(schema))
        unknown = sorted(set(self.attack_params) - own)
        if unknown:
            raise SuiteError(f"attack_params: {self.attack} has no parameter(s) "
                             f"{', '.join(unknown)} (allowed: {', '.join(sorted(own)) or 'none'})")
        validate(schema, self.attack_params, "attack_params")


def _fail(task: str, message: str) -> SuiteError:
    return SuiteError(f"task {task}: {message}")


def _own_params(schema: type) -> dict[str, Any]:
    """The parameters an attack has beyond FGSM's (what `transfer`'s attack_params may set)."""
    inherited = set(defaults(FgsmParams))
    return {k: v for k, v in defaults(schema).items() if k not in inherited}


# ---------------------------------------------------------------- shared machinery


@dataclass(frozen=True)
class _Selection:
    """The attacked points: positions in ctx.data, their data, clean logits and labels."""

    index: np.ndarray
    data: EvalData
    clean_logits: torch.Tensor
    labels: torch.Tensor

    def batches(self, ctx: TaskContext, desc: str
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, slice]]:
        """(images, labels, sample positions, rows of this selection) per batch."""
        total = -(-len(self.data) // ctx.batch_size)
        offset = 0
        for x, y in tqdm(self.data.batches(ctx.batch_size, ctx.device, ctx.num_workers),
                         desc=desc, total=total, leave=False, disable=not ctx.progress):
            rows = slice(offset, offset + len(y))
            offset += len(y)
            yield x, y, torch.from_numpy(self.index[rows]), rows


def _select(ctx: TaskContext, task: str, limit: int) -> _Selection:
    if len(ctx.data) == 0:
        raise _fail(task, "the evaluated data set holds no image")
    logits = ctx.clean_logits()
    if limit == 0 or limit >= len(ctx.data):
        index = np.arange(len(ctx.data))
        return _Selection(index, ctx.data, logits, ctx.labels())
    index = stratified_subset(ctx.data.labels, limit, ctx.seed)
    return _Selection(index, ctx.data.subset(index), logits[index], ctx.labels()[index])


def _space(ctx: TaskContext, task: str, space: str, x: torch.Tensor,
           model: nn.Module | None = None, meta: dict[str, Any] | None = None) -> AttackSpace:
    meta = ctx.meta if meta is None else meta
    if space == "normalized" and not ("mean" in meta and "std" in meta):
        raise _fail(task, "space 'normalized' needs the checkpoint's mean and std")
    return attack_space(ctx.model if model is None else model, x, space, meta.get("mean"),
                        meta.get("std"))


def _wrong(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per-sample: the label is not among the k highest outputs."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices != labels[:, None]).all(dim=1)


class _Tally:
    """Per (attack, eps): counts of top-1 / top-5 errors (clean mistakes included) and raw
    top-1 errors (the adversarial inputs alone)."""

    def __init__(self, selection: _Selection) -> None:
        self.clean1 = _wrong(selection.clean_logits, selection.labels, 1)
        self.clean5 = _wrong(selection.clean_logits, selection.labels, 5)
        self.counts: dict[tuple[str, float], np.ndarray] = {}

    def add(self, key: tuple[str, float], logits: torch.Tensor, labels: torch.Tensor,
            rows: slice) -> None:
        logits = logits.detach().float().cpu()
        labels = labels.cpu()
        raw1, raw5 = _wrong(logits, labels, 1), _wrong(logits, labels, 5)
        counts = np.array([int((raw1 | self.clean1[rows]).sum()),
                           int((raw5 | self.clean5[rows]).sum()), int(raw1.sum())])
        self.counts[key] = self.counts.get(key, np.zeros(3, dtype=np.int64)) + counts

    def errors(self, key: tuple[str, float]) -> tuple[int, int, int]:
        """(top-1, top-5, raw top-1) error counts over the selection."""
        top1, top5, raw = (int(count) for count in self.counts[key])
        return top1, top5, raw


def _evaluate(model: nn.Module, x_adv: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return require_finite(model(x_adv), "on adversarial inputs")


def _randomized(adv_space: AttackSpace, clean_logits: torch.Tensor, logits: torch.Tensor,
                rows: slice) -> bool:
    """Whether the model's outputs are random: the task's pass on a batch differs from the
    shared clean pass, or (first batch) two passes in a row differ. The runner reseeds before
    each task, which replays the clean pass's dropout masks, so only the back-to-back passes
    (the random stream advancing between them) reliably expose dropout left on."""
    if sanity.outputs_differ(clean_logits, logits):
        return True
    return rows.start == 0 and sanity.outputs_randomized(adv_space.model, adv_space.x)


def _model_flags(selection: _Selection, randomized: bool, zero_grad: int | None,
                 conditions: dict[str, Any]) -> list[Metric]:
    """flag_randomized, flag_softmax_output and (when measured) zero_grad_rate, flag_zero_grad.

    `randomized`: see `_randomized`.
    """
    n = len(selection.labels)
    metrics = [
        Metric("flag_randomized", float(randomized), n, False, dict(conditions)),
        Metric("flag_softmax_output", float(sanity.outputs_are_probabilities(
            selection.clean_logits)), n, False, dict(conditions)),
    ]
    if zero_grad is not None:
        metrics += [Metric.rate("zero_grad_rate", zero_grad, n, conditions=conditions),
                    Metric("flag_zero_grad", float(zero_grad > 0), n, False, dict(conditions))]
    return metrics


def _top_metrics(tally: _Tally, key: tuple[str, float], n: int, num_classes: int,
                 conditions: dict[str, Any]) -> list[Metric]:
    top1, top5, _ = tally.errors(key)
    metrics = [Metric.rate("top1_err", top1, n, conditions=conditions)]
    if num_classes > 5:
        metrics.append(Metric.rate("top5_err", top5, n, conditions=conditions))
    return metrics


# ---------------------------------------------------------------- fixed-budget attacks


@dataclass(frozen=True)
class _GradientSpec:
    """A validated fixed-budget attack configuration (fgsm, ifgsm or pgd)."""

    attack: str
    eps: list[float]
    space: str
    loss: str
    norm: str = "linf"
    steps: int = 1
    step_factor: float = 1.0
    restarts: int = 1
    random_start: bool = False

    def run(self, adv_space: AttackSpace, y: torch.Tensor, eps: float, index: torch.Tensor,
            seed: int, grad: torch.Tensor | None = None) -> torch.Tensor:
        """The adversarial batch (in the attack space) at one eps."""
        model, x, bounds = adv_space.model, adv_space.x, adv_space.bounds
        if self.attack == "fgsm":
            return fgm(model, x, y, eps, norm=self.norm, loss=self.loss, bounds=bounds,
                       grad=grad)
        if self.attack == "ifgsm":
            return ifgsm(model, x, y, eps, steps=self.steps,
                         step_size=self.step_factor * eps / self.steps, loss=self.loss,
                         bounds=bounds)
        return pgd(model, x, y, eps, norm=self.norm, steps=self.steps,
                   step_size=self.step_factor * eps / self.steps,
                   random_start=self.random_start, restarts=self.restarts, seed=seed,
                   index=index, loss=self.loss, bounds=bounds)


def _gradient_spec(attack: str, params: dict[str, Any]) -> _GradientSpec:
    """The configuration of a fixed-budget attack from its (validated) parameters."""
    return _GradientSpec(attack=attack, eps=[float(v) for v in params["eps"]],
                         space=params["space"], loss=params["loss"],
                         **{k: params[k] for k in _own_params(GRADIENT_ATTACKS[attack])})


def _gradient_task(ctx: TaskContext, task: str, attack: str, params: dict[str, Any]
                   ) -> list[Metric]:
    spec = _gradient_spec(attack, params)
    selection = _select(ctx, task, params["limit"])
    tally, zero_grad, randomized = _Tally(selection), 0, False
    for x, y, index, rows in selection.batches(ctx, task):
        adv_space = _space(ctx, task, spec.space, x)
        logits, grad = loss_gradient(adv_space.model, adv_space.x, y, spec.loss)
        randomized |= _randomized(adv_space, selection.clean_logits[rows], logits, rows)
        clean_right = ~tally.clean1[rows].to(grad.device)
        zero_grad += int((sanity.zero_gradients(grad) & clean_right).sum())
        one_step = _GradientSpec("fgsm", spec.eps, spec.space, spec.loss, spec.norm)
        for eps in spec.eps:
            runs = [("fgsm", one_step)] + ([(attack, spec)] if attack != "fgsm" else [])
            for name, run in runs:
                x_adv = run.run(adv_space, y, eps, index, ctx.seed, grad=grad)
                check_adversarial(adv_space.x, x_adv, norm=spec.norm, bounds=adv_space.bounds,
                                  eps=eps, what=f"task {task}, {name} at eps={eps:g}")
                tally.add((name, eps), _evaluate(adv_space.model, x_adv), y, rows)
    return _gradient_metrics(spec, selection, tally, randomized, zero_grad)


def _gradient_metrics(spec: _GradientSpec, selection: _Selection, tally: _Tally,
                      randomized: bool, zero_grad: int | None,
                      extra: dict[str, Any] | None = None) -> list[Metric]:
    n, num_classes = len(selection.labels), selection.clean_logits.shape[1]
    base = {"space": spec.space, "norm": spec.norm, **(extra or {})}
    clean_errors = int(tally.clean1.sum())
    metrics, errors = [], []
    for eps in spec.eps:
        at = {"eps": eps, **base}
        metrics += _top_metrics(tally, (spec.attack, eps), n, num_classes, at)
        top1, _, raw = tally.errors((spec.attack, eps))
        errors.append(top1)  # counts over the same points: ordered as the rates are
        metrics.append(Metric("flag_below_clean", float(raw < clean_errors), n, False, dict(at)))
        if spec.attack != "fgsm" and ("fgsm", eps) in tally.counts:
            fgsm_top1 = tally.errors(("fgsm", eps))[0]
            metrics += [Metric.rate("fgsm_top1_err", fgsm_top1, n, conditions=at),
                        Metric("flag_below_fgsm", float(top1 < fgsm_top1), n, False, dict(at))]
    metrics.append(Metric("flag_not_monotone", float(sanity.not_monotone(spec.eps, errors)), n,
                          False, dict(base)))
    return metrics + _model_flags(selection, randomized, zero_grad, base)


@register_task("fgsm", params=FgsmParams, version=3)
def fgsm_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """FGSM (Linf, one step) top-1/top-5 error per eps, white-box, true labels."""
    return _gradient_task(ctx, "fgsm", "fgsm", params)


@register_task("ifgsm", params=IfgsmParams, version=3)
def ifgsm_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """I-FGSM (Linf, no random start, step = step_factor * eps / steps) error per eps."""
    return _gradient_task(ctx, "ifgsm", "ifgsm", params)


@register_task("pgd", params=PgdParams, version=3)
def pgd_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """PGD (Linf or L2; step = step_factor * eps / steps; seeded random start) error per eps."""
    return _gradient_task(ctx, "pgd", "pgd", params)


# ---------------------------------------------------------------- minimal-perturbation attacks


def _minimal_task(ctx: TaskContext, task: str, params: dict[str, Any], norm: str,
                  attack: Callable[[AttackSpace, torch.Tensor], MinimalResult]) -> list[Metric]:
    """Run a minimal attack batch by batch: median norm, fail rate, top-1 error at each eps."""
    eps, space = [float(v) for v in params["eps"]], params["space"]
    selection = _select(ctx, task, params["limit"])
    tally, zero_grad, randomized, norms = _Tally(selection), 0, False, []
    for x, y, _, rows in selection.batches(ctx, task):
        adv_space = _space(ctx, task, space, x)
        logits, grad = loss_gradient(adv_space.model, adv_space.x, y)
        randomized |= _randomized(adv_space, selection.clean_logits[rows], logits, rows)
        clean_right = ~tally.clean1[rows].to(grad.device)
        zero_grad += int((sanity.zero_gradients(grad) & clean_right).sum())
        result: MinimalResult = attack(adv_space, y)
        check_adversarial(adv_space.x, result.x_adv, norm=norm, bounds=adv_space.bounds,
                          what=f"task {task}")
        # Count clean mistakes by the shared clean pass, as every other task does.
        norms.append(torch.where(tally.clean1[rows], 0.0, result.norms.cpu()))
    distances = torch.cat(norms)
    n, base = len(distances), {"space": space, "norm": norm}
    metrics = [_median_norm(distances.double().numpy(), base),
               Metric.rate("fail_rate", int(torch.isinf(distances).sum()), n, conditions=base)]
    metrics += [Metric.rate("top1_err", int((distances <= e).sum()), n,
                            conditions={"eps": e, **base}) for e in eps]
    return metrics + _model_flags(selection, randomized, zero_grad, base)


def _median_norm(distances: np.ndarray, conditions: dict[str, Any]) -> Metric:
    """`median_norm`: the lower median (as `torch.median`) with its order-statistic interval.

    [x_(k), x_(n+1-k)] (1-based order statistics), k the largest with
    P(Binomial(n, 1/2) < k) < 2.5 %, covers the median with probability >= 95 % whatever the
    distribution, ties included. Left out where k < 1 (n < 6) or the upper bound is +inf.
    """
    ordered = np.sort(distances)
    n = len(ordered)
    median = float(ordered[(n - 1) // 2])
    k = int(stats.binom.ppf(0.025, n, 0.5))  # smallest k with P(B <= k) >= 2.5 %
    if k < 1 or not math.isfinite(ordered[n - k]):
        return Metric("median_norm", median, n, True, dict(conditions))
    return Metric("median_norm", median, n, True, dict(conditions), float(ordered[k - 1]),
                  float(ordered[n - k]))


@register_task("deepfool", params=DeepFoolParams, version=3)
def deepfool_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """DeepFool (L2 or Linf): median perturbation norm, fail rate, top-1 error at eps."""
    norm = params["norm"]
    return _minimal_task(ctx, "deepfool", params, norm, lambda s, y: deepfool(
        s.model, s.x, y, norm=norm, steps=params["steps"], candidates=params["candidates"],
        overshoot=float(params["overshoot"]), bounds=s.bounds))


@register_task("cw", params=CwParams, version=3)
def cw_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Carlini-Wagner L2 (foolbox): median perturbation norm, fail rate, top-1 error at eps."""
    options = {"binary_search_steps": params["binary_search_steps"], "steps": params["steps"],
               "stepsize": float(params["stepsize"]), "confidence": float(params["confidence"]),
               "initial_const": float(params["initial_const"]),
               "abort_early": params["abort_early"]}
    return _minimal_task(ctx, "cw", params, "l2", lambda s, y: carlini_wagner(
        s.model, s.x, y, bounds=s.bounds, **options))


@register_task("ddn", params=DdnParams, version=3)
def ddn_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """DDN (foolbox, L2): median perturbation norm, fail rate, top-1 error at eps."""
    steps = params["steps"]
    init_epsilon, gamma = float(params["init_epsilon"]), float(params["gamma"])
    return _minimal_task(ctx, "ddn", params, "l2", lambda s, y: ddn(
        s.model, s.x, y, steps=steps, init_epsilon=init_epsilon, gamma=gamma,
        seed=ctx.seed, bounds=s.bounds))


# ---------------------------------------------------------------- black-box transfer


@dataclass(frozen=True)
class _Crafted:
    """Adversarial points crafted on a surrogate (in its attack space, CPU, selection order)."""

    key: str
    surrogate: str
    meta: dict[str, Any]
    points: dict[float, torch.Tensor]

    def nbytes(self) -> int:
        """Memory held by the adversarial points."""
        return sum(t.numel() * t.element_size() for t in self.points.values())


# Transfer cache: adversarial sets crafted in this process, keyed by (surrogate sha256, attack
# configuration, data id, seed, limit, batch size, device) and reused for every target checkpoint
# of a run. Least recently used sets are dropped once the cache holds more than CACHE_BYTES
# (a set is N x C x H x W float32 per eps; the newest set is always kept).
CACHE_BYTES = 2 << 30
_CRAFTED: OrderedDict[str, _Crafted] = OrderedDict()


def _remember(crafted: _Crafted) -> None:
    _CRAFTED[crafted.key] = crafted
    _CRAFTED.move_to_end(crafted.key)
    while len(_CRAFTED) > 1 and sum(c.nbytes() for c in _CRAFTED.values()) > CACHE_BYTES:
        _CRAFTED.popitem(last=False)


def _surrogate_location(value: str, ckpt_dir: Path | None) -> Path:
    """The surrogate's path: absolute, or relative to the checkpoint directory."""
    path = Path(value).expanduser()
    if not path.is_absolute() and ckpt_dir is not None:
        base = Path(ckpt_dir)
        path = (base if base.is_dir() else base.parent) / path
    return path


def _transfer_inputs(params: dict[str, Any], places: TaskPlaces) -> list[Path]:
    """The surrogate checkpoint: replacing it re-keys the stored transfer results."""
    value = params.get("surrogate")
    return [_surrogate_location(value, places.ckpt_dir)] if isinstance(value, str) and value \
        else []


def _surrogate_path(ctx: TaskContext, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise _fail("transfer", "parameter `surrogate` must name the surrogate checkpoint "
                                "(a path, absolute or relative to the checkpoint directory; "
                                "or use --surrogate)")
    path = _surrogate_location(value, ctx.ckpt_dir)
    if not path.is_file():
        raise _fail("transfer", f"surrogate checkpoint {path} not found (parameter `surrogate`)")
    return path


def _load_surrogate(ctx: TaskContext, path: Path) -> tuple[Any, Any]:
    """(CheckpointRef, LoadedModel) of the surrogate; metadata it lacks defaults to ctx.meta."""
    root = Path(ctx.ckpt_dir) if ctx.ckpt_dir is not None else path.parent
    if not (root.is_dir() and path.resolve().is_relative_to(root.resolve())):
        root = path.parent
    defaults = {k: ctx.meta[k] for k in ("arch", "num_classes", "mean", "std", "input_size")
                if k in ctx.meta}
    ref = make_ref(path, root, {}, defaults)
    return ref, load_model(ref, trust=ctx.trust_checkpoints)


def _craft(ctx: TaskContext, spec: _GradientSpec, selection: _Selection, path: Path,
           limit: int) -> _Crafted:
    """The surrogate's adversarial points for this configuration (cached, see `_CRAFTED`)."""
    sha = sha256_file(path)
    labels = hashlib.sha256(selection.labels.numpy().tobytes()).hexdigest()
    key = json.dumps({"surrogate": sha, "spec": spec.__dict__, "data": ctx.data_id,
                      "labels": labels, "seed": ctx.seed, "limit": limit,
                      "batch_size": ctx.batch_size, "device": str(ctx.device)}, sort_keys=True)
    if key in _CRAFTED:
        _CRAFTED.move_to_end(key)
        return _CRAFTED[key]
    ref, loaded = _load_surrogate(ctx, path)
    if loaded.meta["num_classes"] != selection.clean_logits.shape[1]:
        raise _fail("transfer", f"surrogate {path} has {loaded.meta['num_classes']} classes, "
                                f"the target {selection.clean_logits.shape[1]}")
    surrogate = loaded.model.to(ctx.device).eval()
    chunks: dict[float, list[torch.Tensor]] = {eps: [] for eps in spec.eps}
    for x, y, index, _ in selection.batches(ctx, "transfer: crafting"):
        adv_space = _space(ctx, "transfer", spec.space, x, model=surrogate, meta=loaded.meta)
        grad = (input_gradient(adv_space.model, adv_space.x, y, spec.loss)
                if spec.attack == "fgsm" else None)
        for eps in spec.eps:
            x_adv = spec.run(adv_space, y, eps, index, ctx.seed, grad=grad)
            check_adversarial(adv_space.x, x_adv, norm=spec.norm, bounds=adv_space.bounds,
                              eps=eps, what=f"task transfer, {spec.attack} at eps={eps:g}")
            chunks[eps].append(x_adv.detach().cpu())
    crafted = _Crafted(key, ref.name, dict(loaded.meta),
                       {eps: torch.cat(parts) for eps, parts in chunks.items()})
    _remember(crafted)
    return crafted


@register_task("transfer", params=TransferParams, version=3, inputs=_transfer_inputs)
def transfer_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Black-box error per eps: adversarial examples crafted on a surrogate checkpoint."""
    attack = params["attack"]
    spec = _gradient_spec(attack, {**params, **_own_params(GRADIENT_ATTACKS[attack]),
                                   **params["attack_params"]})
    path = _surrogate_path(ctx, params["surrogate"])
    selection = _select(ctx, "transfer", params["limit"])
    crafted = _craft(ctx, spec, selection, path, params["limit"])
    tally, randomized = _Tally(selection), False
    for x, y, _, rows in selection.batches(ctx, "transfer"):
        adv_space = _space(ctx, "transfer", spec.space, x, meta=crafted.meta)
        if rows.start == 0:  # two extra forward passes, on the first batch only
            randomized = _randomized(adv_space, selection.clean_logits[rows],
                                     _evaluate(adv_space.model, adv_space.x), rows)
        for eps in spec.eps:
            x_adv = crafted.points[eps][rows].to(ctx.device)
            check_adversarial(adv_space.x, x_adv, norm=spec.norm, bounds=adv_space.bounds,
                              eps=eps, what=f"task transfer, {attack} at eps={eps:g}")
            tally.add((attack, eps), _evaluate(adv_space.model, x_adv), y, rows)
    return _gradient_metrics(spec, selection, tally, bool(randomized), None,
                             extra={"attack": attack, "surrogate": crafted.surrogate})
