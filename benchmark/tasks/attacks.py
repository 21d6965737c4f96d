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
- `flag_randomized`: a forward pass differs from the shared clean pass on the same images
  (dropout or noise at test time); `flag_softmax_output`: the outputs are already probabilities.
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
from benchmark.tasks.registry import Metric, TaskContext, TaskPlaces, register_task

LINF_EPS = [8 / 255]  # the CIFAR Linf budget (RobustBench)
L2_EPS = [0.5]  # the CIFAR L2 budget
COMMON = {"space": "pixel", "limit": 0}


# ---------------------------------------------------------------- parameter checks


def _fail(task: str, message: str) -> SuiteError:
    return SuiteError(f"task {task}: {message}")


def _eps_list(task: str, value: Any) -> list[float]:
    ok = isinstance(value, list) and value and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in value)
    if not ok:
        raise _fail(task, f"parameter `eps` must be a non-empty list of numbers >= 0, "
                          f"got {value!r}")
    if len(set(value)) != len(value):
        raise _fail(task, f"parameter `eps` lists a value twice: {value!r}")
    return [float(v) for v in value]


def _choice(task: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(task, f"parameter `{name}` must be one of {', '.join(map(repr, allowed))}, "
                          f"got {value!r}")
    return value


def _integer(task: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(task, f"parameter `{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def _number(task: str, name: str, value: Any, minimum: float = 0.0, strict: bool = True
            ) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = ">" if strict else ">="
        raise _fail(task, f"parameter `{name}` must be a number {bound} {minimum:g}, "
                          f"got {value!r}")
    return float(value)


def _flag(task: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(task, f"parameter `{name}` must be true or false, got {value!r}")
    return value


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


def _select(ctx: TaskContext, task: str, limit: Any) -> _Selection:
    limit = _integer(task, "limit", limit, 0)
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
        return model(x_adv)


def _model_flags(selection: _Selection, randomized: bool, zero_grad: int | None,
                 conditions: dict[str, Any]) -> list[Metric]:
    """flag_randomized, flag_softmax_output and (when measured) zero_grad_rate, flag_zero_grad.

    `randomized`: a forward pass of the task differed from the shared clean pass on the same
    images.
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


def _gradient_spec(task: str, attack: str, params: dict[str, Any]) -> _GradientSpec:
    """Validate the parameters of a fixed-budget attack (also used by `transfer`)."""
    fields: dict[str, Any] = {
        "attack": attack,
        "eps": _eps_list(task, params["eps"]),
        "space": _choice(task, "space", params["space"], SPACES),
        "loss": _choice(task, "loss", params["loss"], LOSSES),
    }
    if attack == "pgd":
        fields["norm"] = _choice(task, "norm", params["norm"], NORMS)
        fields["restarts"] = _integer(task, "restarts", params["restarts"], 1)
        fields["random_start"] = _flag(task, "random_start", params["random_start"])
        if fields["restarts"] > 1 and not fields["random_start"]:
            raise _fail(task, "restarts > 1 needs random_start = true")
    if attack in ("pgd", "ifgsm"):
        fields["steps"] = _integer(task, "steps", params["steps"], 1)
        fields["step_factor"] = _number(task, "step_factor", params["step_factor"])
    return _GradientSpec(**fields)


def _gradient_task(ctx: TaskContext, task: str, attack: str, params: dict[str, Any]
                   ) -> list[Metric]:
    spec = _gradient_spec(task, attack, params)
    selection = _select(ctx, task, params["limit"])
    tally, zero_grad, randomized = _Tally(selection), 0, False
    for x, y, index, rows in selection.batches(ctx, task):
        adv_space = _space(ctx, task, spec.space, x)
        logits, grad = loss_gradient(adv_space.model, adv_space.x, y, spec.loss)
        randomized |= sanity.outputs_differ(selection.clean_logits[rows], logits)
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


ATTACK_PARAMS = {  # per-attack parameters and defaults, shared by the tasks and `transfer`
    "fgsm": {},
    "ifgsm": {"steps": 10, "step_factor": 1.0},
    "pgd": {"norm": "linf", "steps": 10, "step_factor": 2.5, "restarts": 1,
            "random_start": True},
}


@register_task("fgsm", defaults={"eps": LINF_EPS, "loss": "ce", **COMMON}, version=2)
def fgsm_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """FGSM (Linf, one step) top-1/top-5 error per eps, white-box, true labels."""
    return _gradient_task(ctx, "fgsm", "fgsm", params)


@register_task("ifgsm", defaults={"eps": LINF_EPS, **ATTACK_PARAMS["ifgsm"], "loss": "ce",
                                  **COMMON}, version=2)
def ifgsm_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """I-FGSM (Linf, no random start, step = step_factor * eps / steps) error per eps."""
    return _gradient_task(ctx, "ifgsm", "ifgsm", params)


@register_task("pgd", defaults={"eps": LINF_EPS, **ATTACK_PARAMS["pgd"], "loss": "ce",
                                **COMMON}, version=2)
def pgd_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """PGD (Linf or L2; step = step_factor * eps / steps; seeded random start) error per eps."""
    return _gradient_task(ctx, "pgd", "pgd", params)


# ---------------------------------------------------------------- minimal-perturbation attacks


def _minimal_task(ctx: TaskContext, task: str, params: dict[str, Any], norm: str,
                  attack: Callable[[AttackSpace, torch.Tensor], MinimalResult]) -> list[Metric]:
    """Run a minimal attack batch by batch: median norm, fail rate, top-1 error at each eps."""
    eps = _eps_list(task, params["eps"])
    space = _choice(task, "space", params["space"], SPACES)
    selection = _select(ctx, task, params["limit"])
    tally, zero_grad, randomized, norms = _Tally(selection), 0, False, []
    for x, y, _, rows in selection.batches(ctx, task):
        adv_space = _space(ctx, task, space, x)
        logits, grad = loss_gradient(adv_space.model, adv_space.x, y)
        randomized |= sanity.outputs_differ(selection.clean_logits[rows], logits)
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


@register_task("deepfool", defaults={"eps": L2_EPS, "norm": "l2", "steps": 50,
                                     "candidates": 10, "overshoot": 0.02, **COMMON},
               version=2)
def deepfool_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """DeepFool (L2 or Linf): median perturbation norm, fail rate, top-1 error at eps."""
    norm = _choice("deepfool", "norm", params["norm"], NORMS)
    steps = _integer("deepfool", "steps", params["steps"], 1)
    candidates = _integer("deepfool", "candidates", params["candidates"], 2)
    overshoot = _number("deepfool", "overshoot", params["overshoot"], strict=False)
    return _minimal_task(ctx, "deepfool", params, norm, lambda s, y: deepfool(
        s.model, s.x, y, norm=norm, steps=steps, candidates=candidates,
        overshoot=overshoot, bounds=s.bounds))


@register_task("cw", defaults={"eps": L2_EPS, "binary_search_steps": 9, "steps": 10000,
                               "stepsize": 0.01, "confidence": 0.0, "initial_const": 1e-3,
                               "abort_early": True, **COMMON}, version=2)
def cw_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Carlini-Wagner L2 (foolbox): median perturbation norm, fail rate, top-1 error at eps."""
    options = {
        "binary_search_steps": _integer("cw", "binary_search_steps",
                                        params["binary_search_steps"], 1),
        "steps": _integer("cw", "steps", params["steps"], 1),
        "stepsize": _number("cw", "stepsize", params["stepsize"]),
        "confidence": _number("cw", "confidence", params["confidence"], strict=False),
        "initial_const": _number("cw", "initial_const", params["initial_const"]),
        "abort_early": _flag("cw", "abort_early", params["abort_early"]),
    }
    return _minimal_task(ctx, "cw", params, "l2", lambda s, y: carlini_wagner(
        s.model, s.x, y, bounds=s.bounds, **options))


@register_task("ddn", defaults={"eps": L2_EPS, "steps": 100, "init_epsilon": 1.0,
                                "gamma": 0.05, **COMMON}, version=2)
def ddn_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """DDN (foolbox, L2): median perturbation norm, fail rate, top-1 error at eps."""
    steps = _integer("ddn", "steps", params["steps"], 1)
    init_epsilon = _number("ddn", "init_epsilon", params["init_epsilon"])
    gamma = _number("ddn", "gamma", params["gamma"])
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


@register_task("transfer", defaults={"surrogate": "", "attack": "fgsm", "attack_params": {},
                                     "eps": LINF_EPS, "loss": "ce", **COMMON},
               version=2, inputs=_transfer_inputs)
def transfer_task(ctx: TaskContext, params: dict[str, Any]) -> list[Metric]:
    """Black-box error per eps: adversarial examples crafted on a surrogate checkpoint."""
    attack = _choice("transfer", "attack", params["attack"], tuple(ATTACK_PARAMS))
    given = params["attack_params"]
    if not isinstance(given, dict):
        raise _fail("transfer", f"parameter `attack_params` must be a table, got {given!r}")
    unknown = sorted(set(given) - set(ATTACK_PARAMS[attack]))
    if unknown:
        allowed = ", ".join(ATTACK_PARAMS[attack]) or "none"
        raise _fail("transfer", f"attack_params: {attack} has no parameter(s) "
                                f"{', '.join(unknown)} (allowed: {allowed})")
    spec = _gradient_spec("transfer", attack, {**params, **ATTACK_PARAMS[attack], **given})
    path = _surrogate_path(ctx, params["surrogate"])
    selection = _select(ctx, "transfer", params["limit"])
    crafted = _craft(ctx, spec, selection, path, params["limit"])
    tally, randomized = _Tally(selection), None
    for x, y, _, rows in selection.batches(ctx, "transfer"):
        if randomized is None:  # one extra forward pass, on the first batch
            randomized = sanity.outputs_differ(selection.clean_logits[rows], _evaluate(
                ctx.model, x))
        adv_space = _space(ctx, "transfer", spec.space, x, meta=crafted.meta)
        for eps in spec.eps:
            x_adv = crafted.points[eps][rows].to(ctx.device)
            check_adversarial(adv_space.x, x_adv, norm=spec.norm, bounds=adv_space.bounds,
                              eps=eps, what=f"task transfer, {attack} at eps={eps:g}")
            tally.add((attack, eps), _evaluate(adv_space.model, x_adv), y, rows)
    return _gradient_metrics(spec, selection, tally, bool(randomized), None,
                             extra={"attack": attack, "surrogate": crafted.surrogate})
