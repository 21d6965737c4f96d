"""Adversarial robustness tasks: fgsm, ifgsm, pgd, deepfool, cw, ddn, transfer, with sanity flags.

Conventions (each a parameter with a named default):
- `eps`: a list; one task run sweeps it. Units are those of `space`: `pixel` (default; [0, 1]
  images, the model's normalization inside the wrapper) or `normalized` (PatchUp: eps on
  (x - mean) / std, clamped to the batch's min / max). Fixed-budget tasks (fgsm, ifgsm, pgd,
  transfer) report `top1_err` per eps, and `top5_err` with more than 5 classes (fgsm, ifgsm,
  pgd and `attack`: when `top5 = true`; transfer: always).
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

Attack compute goes only where it can change the answer (fixed-budget tasks fgsm, ifgsm, pgd,
attack; not transfer, which crafts on its surrogate):
- `top5` (default false): also report `top5_err` (Mixup's ImageNet tables), with more than 5
  classes. "Broken" below means: the label left the model's top-k, k = 5 with `top5`, else 1.
  Without `top5` the attacks stop at the first top-1 miss (far cheaper) and the records hold
  no top-5 column; with it, a point misclassified but still in the top-5 is attacked on, so no
  reported error can fall below the full run's.
- A point broken when clean (by the shared clean pass) is never attacked in any attack run
  (the task's own or the FGSM comparison): it is an error at every eps anyway. Its rows keep
  `correct` false, and its `adv_correct`, `pred` and `confidence` (and `correct_top5`) are the
  clean pass's. So the error on the adversarial inputs alone is not below the clean error:
  `flag_below_clean` stays 0 for these tasks (it can fire for transfer).
- `sweep` (fgsm, ifgsm, pgd, attack): `nested` (default) runs the eps list from the smallest up
  and, in each attack run on its own (the FGSM comparison too), attacks at a larger eps only
  the points not broken at every smaller eps. A broken point's rows at larger eps repeat the
  eps that broke it (its example lies inside the larger ball); a point attacked on keeps the
  smaller eps's example where that one misclassified it and the new one does not. The errors
  are thus monotone in eps by construction (`flag_not_monotone` cannot fire) and, on the same
  seed, >= the independent sweep's at every eps. `independent` attacks every point not broken
  when clean at every eps on its own.
- `early_stop` (ifgsm, pgd; default true): each point keeps its first broken iterate and is
  attacked no further; with restarts, a point broken by one restart is not attacked again
  (`attacks.gradient`). The errors can only be >= the full run's. `early_stop = false` with
  `sweep = "independent"` gives the errors of the runs before these options existed; the
  attack functions give their adversarial examples bit for bit, while the tasks now take a
  clean mistake's columns from the clean pass, and on a GPU a batch without the clean mistakes
  may round a point's floats differently. The generic `attack` task passes `early_stop` to an
  attack through its `options` (its registered pgd and ifgsm default to false).
- Both choices are named in the records' facts, `sweep` and `early_stop` (false for an attack
  without early stop, e.g. FGSM); they are parameters, not conditions: the metric rows, their
  conditions and the leaderboard's columns are the same whichever is chosen.

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

Records (each task measures them; its registered reduction computes every metric above from
them alone). `index` is a position in the evaluated data (with `limit`, the positions of the
seeded stratified subset). Base conditions are the task's metric conditions without `eps`:
{`space`, `norm`}, and for transfer also {`attack`, `surrogate`}.
- The model table (conditions: the base; the only table without `eps`): `index`, `correct`
  (clean top-1 hit, from the shared clean pass), `randomized` (the batch holding the sample gave
  random outputs; transfer checks its first batch only), `zero_grad` (white-box tasks: the input
  gradient of the loss is exactly zero; `zero_grad_rate` counts it on clean hits),
  `softmax_output` (the clean outputs are a probability vector; the flag needs all of them).
  Minimal tasks (deepfool, cw, ddn) add `perturbation_norm` (float64: 0 for a clean mistake, +inf
  where the attack failed), their only per-sample result: `top1_err` at eps is the share of
  `perturbation_norm <= eps`.
- Fixed-budget tasks add one table per (attack run, eps), conditions {`eps`, base}; ifgsm and
  pgd, which also run FGSM for `flag_below_fgsm`, tag theirs with `attack` (the task's own
  attack, or `fgsm` for the comparison). Columns: `index`, `correct` (top-1 hit under that
  attack AND when clean: exactly what `top1_err` counts as a non-error), `correct_top5` (the
  same for top-5, where `top5_err` is reported), `adv_correct` (the adversarial input's own top-1
  hit, for `flag_below_clean`), `pred` and `confidence` on the adversarial input (for a clean
  mistake, the clean pass's; in a nested sweep, a point broken at a smaller eps repeats that
  eps's values).
- Facts (fixed-budget tasks): `sweep` and `early_stop`, as run.
Convention for combining tasks: at a given (space, norm, eps), a sample survives every
fixed-budget attack when `correct` holds in each task's own-attack table (per `index`), and a
minimal attack where `norm > eps`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

import attacks.fixed  # noqa: F401  (registers the fixed-budget attacks)
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
from attacks.gradient import in_topk
from attacks.minimal import MinimalResult, carlini_wagner, ddn, deepfool
from benchmark.checkpoints import load_model, make_ref
from benchmark.data import EvalData, stratified_subset
from benchmark.errors import SuiteError
from benchmark.inputs import InputRequest
from benchmark.params import defaults, param, validate
from benchmark.records import Records
from benchmark.registry import registry
from benchmark.tasks.registry import (
    Axis,
    TaskContext,
    TaskPlaces,
    classification_columns,
    register_task,
    require_finite,
)

LINF_EPS = [8 / 255]  # the CIFAR Linf budget (RobustBench)
L2_EPS = [0.5]  # the CIFAR L2 budget


# ---------------------------------------------------------------- parameter schemas


@dataclass(frozen=True)
class AttackParams:
    """Parameters every attack task has: the attack `space` and `limit` (a seeded stratified
    subset of the evaluated images; 0 = all)."""

    space: str = param("pixel", choices=SPACES)
    limit: int = param(0, ge=0)


SWEEPS = ("nested", "independent")  # how a white-box task runs its eps list (module docstring)
# Parameters of how a white-box task runs its attack, not of the attack crafted: a transfer
# task's `attack_params` have neither.
RUN_PARAMS = ("sweep", "early_stop", "top5")


@dataclass(frozen=True)
class BudgetParams(AttackParams):
    """A fixed-budget attack: the budgets `eps` and the `loss`."""

    eps: list[float] = param(LINF_EPS, ge=0, nonempty=True, distinct=True)
    loss: str = param("ce", choices=LOSSES)


@dataclass(frozen=True)
class FgsmParams(BudgetParams):
    """FGSM: the budgets `eps`, the `loss`, the eps `sweep` (`nested`: a point broken at a
    smaller eps is not attacked again; `independent`: every eps on its own) and `top5` (also
    report `top5_err`: a point is then broken only once its label leaves the top-5)."""

    sweep: str = param("nested", choices=SWEEPS)
    top5: bool = param(False)


@dataclass(frozen=True)
class IfgsmParams(FgsmParams):
    """I-FGSM: `steps` of step_factor * eps / steps; `early_stop`: a point's first
    misclassified iterate ends its attack."""

    steps: int = param(10, ge=1)
    step_factor: float = param(1.0, gt=0)
    early_stop: bool = param(True)


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
class TransferParams(BudgetParams):
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
    """The parameters an attack has beyond FGSM's (what `transfer`'s attack_params may set),
    `RUN_PARAMS` left out."""
    inherited = set(defaults(FgsmParams)) | set(RUN_PARAMS)
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
        """(images, labels, sample positions, rows of this selection) per batch, with a batch
        bar and a bar of the model's image passes (`passes_bar`)."""
        total = -(-len(self.data) // ctx.batch_size)
        offset = 0
        with passes_bar(ctx.model, desc, ctx.progress):
            for x, y in tqdm(self.data.batches(ctx.batch_size, ctx.device, ctx.num_workers),
                             desc=desc, total=total, leave=False, disable=not ctx.progress):
                rows = slice(offset, offset + len(y))
                offset += len(y)
                yield x, y, torch.from_numpy(self.index[rows]), rows


@contextmanager
def passes_bar(model: nn.Module, desc: str, enabled: bool) -> Iterator[None]:
    """A bar counting the images `model` is run on (forward, with or without gradients) while
    the block runs, so a long attack on one big batch still shows it is moving."""
    passes = tqdm(desc=f"{desc}: model passes", unit="img", leave=False, disable=not enabled)

    def count(_module: nn.Module, _inputs: object, outputs: torch.Tensor) -> None:
        passes.update(len(outputs))  # returns None: a hook's return value would replace the
        # model's outputs

    hook = model.register_forward_hook(count)
    try:
        yield
    finally:
        hook.remove()
        passes.close()


def _select(ctx: TaskContext, task: str, limit: int) -> _Selection:
    if len(ctx.data) == 0:
        raise _fail(task, "the evaluated data set holds no image")
    whole = limit == 0 or limit >= len(ctx.data)
    index = np.arange(len(ctx.data)) if whole else stratified_subset(ctx.data.labels, limit,
                                                                     ctx.seed)
    index = index[ctx.part(len(index))]  # a shard's part of the selection
    logits = ctx.clean_logits_at(index, full_precision=True)  # attacks run in float32
    data = ctx.data if len(index) == len(ctx.data) else ctx.data.subset(index)
    return _Selection(index, data, logits, ctx.labels()[index])


def _selection_axis(params: dict[str, Any], n: int) -> Axis:
    """An attack task's shard axis: the attacked points (its `limit` subset, in data order)."""
    limit = params["limit"]
    return Axis(n if limit == 0 or limit >= n else limit)


def _space(ctx: TaskContext, task: str, space: str, x: torch.Tensor,
           model: nn.Module | None = None, meta: dict[str, Any] | None = None) -> AttackSpace:
    meta = ctx.meta if meta is None else meta
    if space == "normalized" and not ("mean" in meta and "std" in meta):
        raise _fail(task, "space 'normalized' needs the checkpoint's mean and std")
    return attack_space(ctx.model if model is None else model, x, space, meta.get("mean"),
                        meta.get("std"))


class _Columns:
    """Per-sample columns gathered batch by batch (batches in selection order), per table."""

    def __init__(self) -> None:
        self.parts: dict[Any, dict[str, list[np.ndarray]]] = {}

    def add(self, key: Any, **columns: Any) -> None:
        """Append one batch's values of `columns` to table `key`."""
        table = self.parts.setdefault(key, {})
        for name, values in columns.items():
            table.setdefault(name, []).append(np.asarray(values))

    def get(self, key: Any) -> dict[str, np.ndarray]:
        """Table `key`'s columns over the whole selection."""
        return {name: np.concatenate(chunks) for name, chunks in self.parts[key].items()}


class _ModelTable:
    """The model table in the making: per-sample clean hits of the selection (from the shared
    clean pass) and what is observed per batch about the model itself (the zero input gradient,
    randomized outputs); it also turns adversarial outputs into their table's columns."""

    def __init__(self, selection: _Selection) -> None:
        self.selection = selection
        clean = classification_columns(selection.clean_logits, selection.labels, (5,))
        self.wrong1 = torch.from_numpy(~clean["correct"])
        self.wrong5 = torch.from_numpy(~clean.get("correct_top5", np.ones_like(clean["correct"])))
        self.columns = _Columns()

    def observe(self, rows: slice, randomized: bool, zero_grad: torch.Tensor | None = None
                ) -> None:
        """Record one batch: its outputs were random (`randomized`) and each sample's input
        gradient of the loss is exactly zero (`zero_grad`, white-box tasks)."""
        batch = {"randomized": np.full(rows.stop - rows.start, randomized)}
        if zero_grad is not None:
            batch["zero_grad"] = zero_grad.cpu().numpy()
        self.columns.add("clean", **batch)

    def attacked(self, logits: torch.Tensor, labels: torch.Tensor, rows: slice
                 ) -> dict[str, np.ndarray]:
        """One batch's columns under attack: `correct` / `correct_top5` (hit under attack AND
        clean, i.e. clean mistakes count as errors), `adv_correct` (the adversarial input's
        own top-1 hit), `pred`, `confidence`."""
        columns = classification_columns(logits, labels, (5,))
        adv = columns.pop("correct")
        out = {"correct": adv & ~self.wrong1[rows].numpy()}
        if "correct_top5" in columns:
            out["correct_top5"] = columns.pop("correct_top5") & ~self.wrong5[rows].numpy()
        return {**out, "adv_correct": adv, **columns}

    def add_table(self, records: Records, conditions: dict[str, Any], **extra: Any) -> None:
        """The model table: `index`, clean `correct`, `randomized`, `softmax_output`
        (the clean outputs are a probability vector), `zero_grad` when observed; `extra`
        columns (a minimal attack's `norm`) come after `index`."""
        index = self.selection.index.astype(np.int64)
        records.add(conditions, index=index, **extra, correct=~self.wrong1.numpy(),
                    **self.columns.get("clean"),
                    softmax_output=sanity.probability_rows(self.selection.clean_logits).numpy())


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


# ---------------------------------------------------------------- fixed-budget attacks


@dataclass(frozen=True)
class _GradientSpec:
    """A validated fixed-budget attack configuration: a registered attack (`attacks.fixed`),
    its budgets, space, loss, norm and own `options` (steps, step_factor, ...)."""

    attack: str
    eps: list[float]
    space: str
    loss: str
    norm: str = "linf"
    options: dict[str, Any] = field(default_factory=dict)

    def run(self, adv_space: AttackSpace, y: torch.Tensor, eps: float, index: torch.Tensor,
            seed: int, grad: torch.Tensor | None = None) -> torch.Tensor:
        """The adversarial batch (in the attack space) at one eps."""
        attack = registry("attack").get(self.attack)
        return attack(adv_space.model, adv_space.x, y, eps, norm=self.norm,
                      bounds=adv_space.bounds, loss=self.loss, seed=seed, index=index,
                      grad=grad, **self.options)


def _gradient_spec(attack: str, params: dict[str, Any]) -> _GradientSpec:
    """The configuration of a built-in fixed-budget attack from its (validated) parameters."""
    own = {k: params[k] for k in _own_params(GRADIENT_ATTACKS[attack])}
    norm = own.pop("norm", "linf")
    return _GradientSpec(attack=attack, eps=[float(v) for v in params["eps"]],
                         space=params["space"], loss=params["loss"], norm=norm, options=own)


def _gradient_task(ctx: TaskContext, task: str, attack: str, params: dict[str, Any]) -> Records:
    """Run a built-in fixed-budget attack (and, for ifgsm / pgd, FGSM beside it)."""
    spec = _gradient_spec(attack, params)
    early_stop = bool(params.get("early_stop", False))
    if "early_stop" in params:  # ifgsm, pgd: the registered attack takes it as an option
        spec = replace(spec, options={**spec.options, "early_stop": early_stop})
    return _fixed_budget(ctx, task, spec, params["limit"], compare_fgsm=attack != "fgsm",
                         sweep=params["sweep"], early_stop=early_stop, top5=params["top5"])


def _attack_points(run: _GradientSpec, adv_space: AttackSpace, y: torch.Tensor, eps: float,
                   index: torch.Tensor, seed: int, grad: torch.Tensor, todo: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, adversarial examples) of the batch's points `todo` (a CPU mask): the attack
    sees only them (their rows of x, y, index, grad; the batch's bounds)."""
    if bool(todo.all()):
        return adv_space.x, run.run(adv_space, y, eps, index, seed, grad=grad)
    rows = todo.to(adv_space.x.device)
    part = replace(adv_space, x=adv_space.x[rows])
    return part.x, run.run(part, y[rows], eps, index[todo], seed, grad=grad[rows])


def _reported_topk(selection: _Selection, top5: bool) -> int:
    """The largest k whose error the task reports: 5 when asked (`top5`) with more than 5
    classes, else 1. A point is done (early stop, nested sweep) only once its label leaves the
    top-k, so no reported error can fall below the full run's."""
    return 5 if top5 and selection.clean_logits.shape[1] > 5 else 1


def _with_topk(spec: _GradientSpec, topk: int, early_stop: bool) -> _GradientSpec:
    """`spec` told to stop a point only once its label leaves the top-`topk` (attacks that stop
    early, by option or by default, and take `topk`)."""
    takes = "topk" in inspect.signature(registry("attack").get(spec.attack)).parameters
    if not early_stop or not takes:
        return spec
    return replace(spec, options={**spec.options, "topk": topk})


def _kept(before: torch.Tensor, after: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The outputs a point is judged by at this eps: the new attack's, unless the example kept
    from a smaller eps (inside this ball too) already misclassified it and the new one does not
    (a nested sweep attacks on until the top-5 is missed); never better than before."""
    keep = (before.argmax(dim=1) != y) & (after.argmax(dim=1) == y)
    return torch.where(keep[:, None], before, after)


def _fixed_budget(ctx: TaskContext, task: str, spec: _GradientSpec, limit: int,
                  compare_fgsm: bool, extra: dict[str, Any] | None = None,
                  sweep: str = "nested", early_stop: bool = False, top5: bool = False
                  ) -> Records:
    """Run the fixed-budget attack `spec` (with FGSM beside it when `compare_fgsm`) batch by
    batch; `extra` conditions (the generic task's `attack`) join every table's. Clean mistakes
    are never attacked; `sweep` and `top5` as in the module docstring; `early_stop` (passed to
    the attack in `spec.options` already) is named in the facts."""
    if sweep not in SWEEPS:
        raise ValueError(f"sweep must be one of {', '.join(SWEEPS)}, got {sweep!r}")
    selection = _select(ctx, task, limit)
    seen, adversarial = _ModelTable(selection), _Columns()
    topk = _reported_topk(selection, top5)
    runs = [("fgsm", _GradientSpec("fgsm", spec.eps, spec.space, spec.loss, spec.norm))] \
        if compare_fgsm else []
    runs.append((spec.attack, _with_topk(spec, topk, _early_stop_option(spec.attack,
                                                                          spec.options))))
    for x, y, index, rows in selection.batches(ctx, task):
        adv_space = _space(ctx, task, spec.space, x)
        logits, grad = loss_gradient(adv_space.model, adv_space.x, y, spec.loss)
        seen.observe(rows, _randomized(adv_space, selection.clean_logits[rows], logits, rows),
                     sanity.zero_gradients(grad))
        clean = selection.clean_logits[rows].float()
        # per attack run: the outputs each point is judged by (clean for a clean mistake) and,
        # in a nested sweep, the points still robust at every eps so far
        outputs = {name: clean.clone() for name, _ in runs}
        # not attacked: a clean mistake (top-1; with top5, a clean top-5 miss: a clean top-1
        # mistake still in the top-5 can be pushed out of it)
        start = ~(seen.wrong5 if topk == 5 else seen.wrong1)[rows]
        robust = {name: start.clone() for name, _ in runs}
        for eps in sorted(spec.eps):  # smallest first: what `nested` needs
            for name, run in runs:
                if sweep == "independent":
                    outputs[name] = clean.clone()
                todo = robust[name]
                if bool(todo.any()):
                    x_in, x_adv = _attack_points(run, adv_space, y, eps, index, ctx.seed, grad,
                                                 todo)
                    check_adversarial(x_in, x_adv, norm=spec.norm, bounds=adv_space.bounds,
                                      eps=eps, what=f"task {task}, {name} at eps={eps:g}")
                    outputs[name][todo] = _kept(outputs[name][todo], _evaluate(
                        adv_space.model, x_adv).float().cpu(), y[todo].cpu())
                columns = seen.attacked(outputs[name], y, rows)
                if topk == 1:  # top-5 not asked for: not measured under this stopping rule
                    columns.pop("correct_top5", None)
                adversarial.add((name, eps), **columns)
                if sweep == "nested":
                    robust[name] = todo & in_topk(outputs[name], y.cpu(), topk)
    base = {"space": spec.space, "norm": spec.norm, **(extra or {})}
    records = Records(facts={"sweep": sweep, "early_stop": early_stop})
    seen.add_table(records, base)
    for eps in spec.eps:
        for name, _ in runs:
            tagged = {"attack": name} if len(runs) > 1 else {}
            records.add({"eps": eps, **base, **tagged}, index=selection.index.astype(np.int64),
                        **adversarial.get((name, eps)))
    return records


@register_task("fgsm", params=FgsmParams, version=4, axis=_selection_axis)
def fgsm_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """FGSM (Linf, one step) top-1/top-5 error per eps, white-box, true labels."""
    return _gradient_task(ctx, "fgsm", "fgsm", params)


@register_task("ifgsm", params=IfgsmParams, version=4, axis=_selection_axis)
def ifgsm_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """I-FGSM (Linf, no random start, step = step_factor * eps / steps) error per eps."""
    return _gradient_task(ctx, "ifgsm", "ifgsm", params)


@register_task("pgd", params=PgdParams, version=4, axis=_selection_axis)
def pgd_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """PGD (Linf or L2; step = step_factor * eps / steps; seeded random start) error per eps."""
    return _gradient_task(ctx, "pgd", "pgd", params)


# ---------------------------------------------------------------- any registered attack

CONVENTION = {"model", "x", "y", "eps", "norm", "bounds", "loss", "seed", "index", "grad"}


@dataclass(frozen=True)
class AttackTaskParams(AttackParams):
    """The generic task: any fixed-budget attack registered in `registry("attack")` (see
    `attacks.fixed`): its name, the budgets `eps`, its `norm`, the `loss`, its own `options`
    (keyword arguments beyond the calling convention; pgd's and ifgsm's `early_stop` among
    them) and the eps `sweep`."""

    attack: str = param("pgd")
    eps: list[float] = param(LINF_EPS, ge=0, nonempty=True, distinct=True)
    norm: str = param("linf", choices=NORMS)
    loss: str = param("ce", choices=LOSSES)
    options: dict[str, Any] = param({})
    sweep: str = param("nested", choices=SWEEPS)
    top5: bool = param(False)

    def __post_init__(self) -> None:
        attacks = registry("attack")
        fixed = [e.name for e in attacks.entries() if e.info.get("budget") == "fixed"]
        if self.attack not in fixed:
            known = "a minimal-perturbation attack (use its own task)" \
                if self.attack in attacks else f"unknown{attacks.hint(self.attack)}"
            raise SuiteError(f"attack {self.attack!r}: {known}; fixed-budget attacks: "
                             f"{', '.join(fixed)}")
        entry = attacks.entry(self.attack)
        norms = [n.strip() for n in str(entry.info.get("norms", "linf")).split(",")]
        if self.norm not in norms:
            raise SuiteError(f"attack {self.attack!r} supports norm {' or '.join(norms)}, "
                             f"not {self.norm!r}")
        own = set(inspect.signature(entry.value).parameters) - CONVENTION
        unknown = sorted(set(self.options) - own)
        if unknown:
            raise SuiteError(f"options: {self.attack} has no option(s) {', '.join(unknown)} "
                             f"(it has: {', '.join(sorted(own)) or 'none'})")


def _early_stop_option(attack: str, options: dict[str, Any]) -> bool:
    """Whether registered `attack` stops early with `options`: its `early_stop` option, else
    its own default; false for an attack without one."""
    if "early_stop" in options:
        return bool(options["early_stop"])
    default = inspect.signature(registry("attack").get(attack)).parameters.get("early_stop")
    return default is not None and default.default is True


@register_task("attack", params=AttackTaskParams, version=2, axis=_selection_axis)
def attack_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Any registered fixed-budget attack: top-1/top-5 error per eps, white-box, true labels."""
    spec = _GradientSpec(params["attack"], [float(v) for v in params["eps"]], params["space"],
                         params["loss"], params["norm"], dict(params["options"]))
    return _fixed_budget(ctx, "attack", spec, params["limit"], compare_fgsm=False,
                         extra={"attack": params["attack"]}, sweep=params["sweep"],
                         early_stop=_early_stop_option(params["attack"], params["options"]),
                         top5=params["top5"])


# ---------------------------------------------------------------- minimal-perturbation attacks


def _minimal_task(ctx: TaskContext, task: str, params: dict[str, Any], norm: str,
                  attack: Callable[[AttackSpace, torch.Tensor], MinimalResult]) -> Records:
    """Run a minimal attack batch by batch: each point's perturbation norm in the model table."""
    space = params["space"]
    selection = _select(ctx, task, params["limit"])
    seen, norms = _ModelTable(selection), []
    for x, y, _, rows in selection.batches(ctx, task):
        adv_space = _space(ctx, task, space, x)
        logits, grad = loss_gradient(adv_space.model, adv_space.x, y)
        seen.observe(rows, _randomized(adv_space, selection.clean_logits[rows], logits, rows),
                     sanity.zero_gradients(grad))
        result: MinimalResult = attack(adv_space, y)
        check_adversarial(adv_space.x, result.x_adv, norm=norm, bounds=adv_space.bounds,
                          what=f"task {task}")
        # Count clean mistakes by the shared clean pass, as every other task does.
        norms.append(torch.where(seen.wrong1[rows], 0.0, result.norms.cpu()))
    records = Records()
    seen.add_table(records, {"space": space, "norm": norm},
                   perturbation_norm=torch.cat(norms).double().numpy())
    return records


@register_task("deepfool", params=DeepFoolParams, version=3, axis=_selection_axis)
def deepfool_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """DeepFool (L2 or Linf): median perturbation norm, fail rate, top-1 error at eps."""
    norm = params["norm"]
    return _minimal_task(ctx, "deepfool", params, norm, lambda s, y: deepfool(
        s.model, s.x, y, norm=norm, steps=params["steps"], candidates=params["candidates"],
        overshoot=float(params["overshoot"]), bounds=s.bounds))


@register_task("cw", params=CwParams, version=3, axis=_selection_axis)
def cw_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Carlini-Wagner L2 (foolbox): median perturbation norm, fail rate, top-1 error at eps."""
    options = {"binary_search_steps": params["binary_search_steps"], "steps": params["steps"],
               "stepsize": float(params["stepsize"]), "confidence": float(params["confidence"]),
               "initial_const": float(params["initial_const"]),
               "abort_early": params["abort_early"]}
    return _minimal_task(ctx, "cw", params, "l2", lambda s, y: carlini_wagner(
        s.model, s.x, y, bounds=s.bounds, **options))


@register_task("ddn", params=DdnParams, version=3, axis=_selection_axis)
def ddn_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
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

    surrogate: str
    meta: dict[str, Any]
    points: dict[float, torch.Tensor]


@dataclass(frozen=True)
class _Surrogate:
    """A loaded surrogate: its name, model (on the run's device, eval mode) and metadata."""

    name: str
    model: nn.Module
    meta: dict[str, Any]


def _surrogate_location(value: str, ckpt_dir: Path | None) -> Path:
    """The surrogate's path: absolute, or relative to the checkpoint directory."""
    path = Path(value).expanduser()
    if not path.is_absolute() and ckpt_dir is not None:
        base = Path(ckpt_dir)
        path = (base if base.is_dir() else base.parent) / path
    return path


def _meta_defaults(ctx: TaskContext) -> dict[str, Any]:
    """What a surrogate lacking metadata takes from the target checkpoint."""
    return {k: ctx.meta[k] for k in ("arch", "num_classes", "mean", "std", "input_size")
            if k in ctx.meta}


@dataclass(frozen=True)
class SurrogateInput(InputRequest):
    """The surrogate checkpoint (a path, absolute or relative to the checkpoint directory),
    loaded as the run allows (`--trust-checkpoints`); metadata it lacks defaults to the
    target's, which is part of its key."""

    value: str

    def paths(self, places: TaskPlaces) -> list[Path]:
        return [_surrogate_location(self.value, places.ckpt_dir)]

    def key(self, ctx: TaskContext) -> str:
        return json.dumps([super().key(ctx), _meta_defaults(ctx), ctx.trust_checkpoints,
                           str(ctx.device)], sort_keys=True)

    def load(self, ctx: TaskContext) -> _Surrogate:
        path = _surrogate_location(self.value, ctx.ckpt_dir)
        if not path.is_file():
            raise _fail("transfer", f"surrogate checkpoint {path} not found (parameter "
                                    "`surrogate`)")
        root = Path(ctx.ckpt_dir) if ctx.ckpt_dir is not None else path.parent
        if not (root.is_dir() and path.resolve().is_relative_to(root.resolve())):
            root = path.parent
        ref = make_ref(path, root, {}, _meta_defaults(ctx))
        loaded = load_model(ref, trust=ctx.trust_checkpoints)
        return _Surrogate(ref.name, loaded.model.to(ctx.device).eval(), dict(loaded.meta))


@dataclass(frozen=True)
class CraftedInput(InputRequest):
    """The surrogate's adversarial points for one attack configuration (`spec`, JSON of a
    `_GradientSpec`) on the attacked selection (`limit`), crafted once for every target."""

    surrogate: SurrogateInput
    spec: str
    limit: int

    def paths(self, places: TaskPlaces) -> list[Path]:
        return self.surrogate.paths(places)

    def key(self, ctx: TaskContext) -> str:
        return json.dumps([self.surrogate.key(ctx), self.spec, self.limit, ctx.batch_size],
                          sort_keys=True)

    def load(self, ctx: TaskContext) -> _Crafted:
        spec = _GradientSpec(**json.loads(self.spec))
        selection = _select(ctx, "transfer", self.limit)
        surrogate = ctx.cache.get(self.surrogate.key(ctx), lambda: self.surrogate.load(ctx))
        if surrogate.meta["num_classes"] != selection.clean_logits.shape[1]:
            raise _fail("transfer", f"surrogate {self.surrogate.value} has "
                                    f"{surrogate.meta['num_classes']} classes, the target "
                                    f"{selection.clean_logits.shape[1]}")
        chunks: dict[float, list[torch.Tensor]] = {eps: [] for eps in spec.eps}
        for x, y, index, _ in selection.batches(ctx, "transfer: crafting"):
            adv_space = _space(ctx, "transfer", spec.space, x, model=surrogate.model,
                               meta=surrogate.meta)
            grad = (input_gradient(adv_space.model, adv_space.x, y, spec.loss)
                    if spec.attack == "fgsm" else None)
            for eps in spec.eps:
                x_adv = spec.run(adv_space, y, eps, index, ctx.seed, grad=grad)
                check_adversarial(adv_space.x, x_adv, norm=spec.norm, bounds=adv_space.bounds,
                                  eps=eps, what=f"task transfer, {spec.attack} at eps={eps:g}")
                chunks[eps].append(x_adv.detach().cpu())
        return _Crafted(surrogate.name, surrogate.meta,
                        {eps: torch.cat(parts) for eps, parts in chunks.items()})


def _transfer_spec(params: dict[str, Any]) -> _GradientSpec:
    """The attack crafted on the surrogate, with its own parameters."""
    attack = params["attack"]
    return _gradient_spec(attack, {**params, **_own_params(GRADIENT_ATTACKS[attack]),
                                   **params["attack_params"]})


def _transfer_inputs(params: dict[str, Any], places: TaskPlaces) -> dict[str, InputRequest]:
    """The adversarial set crafted on the surrogate (replacing the surrogate file re-keys the
    stored transfer results); none without a surrogate: the task then says what is missing."""
    value = params["surrogate"]
    if not value:
        return {}
    return {"crafted": CraftedInput(SurrogateInput(value),
                                    json.dumps(_transfer_spec(params).__dict__, sort_keys=True),
                                    params["limit"])}


@register_task("transfer", params=TransferParams, version=3, inputs=_transfer_inputs)
def transfer_task(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Black-box error per eps: adversarial examples crafted on a surrogate checkpoint."""
    attack, spec = params["attack"], _transfer_spec(params)
    if not params["surrogate"]:
        raise _fail("transfer", "parameter `surrogate` must name the surrogate checkpoint "
                                "(a path, absolute or relative to the checkpoint directory; "
                                "or use --surrogate)")
    selection = _select(ctx, "transfer", params["limit"])
    crafted = ctx.input("crafted")
    seen, adversarial = _ModelTable(selection), _Columns()
    for x, y, _, rows in selection.batches(ctx, "transfer"):
        adv_space = _space(ctx, "transfer", spec.space, x, meta=crafted.meta)
        randomized = False
        if rows.start == 0:  # two extra forward passes, on the first batch only
            randomized = _randomized(adv_space, selection.clean_logits[rows],
                                     _evaluate(adv_space.model, adv_space.x), rows)
        seen.observe(rows, randomized)
        for eps in spec.eps:
            x_adv = crafted.points[eps][rows].to(ctx.device)
            check_adversarial(adv_space.x, x_adv, norm=spec.norm, bounds=adv_space.bounds,
                              eps=eps, what=f"task transfer, {attack} at eps={eps:g}")
            adversarial.add(eps, **seen.attacked(_evaluate(adv_space.model, x_adv), y, rows))
    base = {"space": spec.space, "norm": spec.norm, "attack": attack,
            "surrogate": crafted.surrogate}
    records = Records()
    seen.add_table(records, base)
    for eps in spec.eps:
        records.add({"eps": eps, **base}, index=selection.index.astype(np.int64),
                    **adversarial.get(eps))
    return records
