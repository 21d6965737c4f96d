"""AutoAttack (Croce & Hein, ICML 2020) through the authors' code, the `pyautoattack` package.

`Ensemble` builds pyautoattack's `AutoAttack` for one (norm, eps, version, seed) and runs its
attacks one stage at a time over the points still robust, as `run_standard_evaluation` does: the
same attack objects with the same settings, the same compaction of the robust points into
batches, the same per-batch seeding. A stage-by-stage run therefore gives pyautoattack's
adversarial examples image for image, while rubench also learns which attack broke each point
and can stop after any finished stage and resume there.

Models take [0, 1] images and normalize inside, so `eps` is in pixel units, as RobustBench's.
AutoAttack's dynamic-defense check runs here (`is_dynamic`); its check of Square against the
gradient attacks is a reduction of the records (`benchmark.reductions.autoattack`). What
pyautoattack logs as warnings is captured (`captured_warnings`), not printed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata

import torch
import torch.nn as nn

from attacks.common import check_adversarial

ENGINE = "pyautoattack"
ENGINE_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
VERSIONS = ("standard", "plus", "rand", "custom")
LOGGER = "auto-attack"  # the logger pyautoattack's attacks write their warnings to
TARGETED = {"apgd-t": "apgd_targeted", "fab-t": "fab"}


def engine_version() -> str:
    """`pyautoattack X.Y.Z`: the engine named in every AutoAttack unit's records."""
    return f"{ENGINE} {metadata.version(ENGINE)}"


def _autoattack_class() -> type:
    try:
        from pyautoattack import AutoAttack
    except ImportError as exc:  # a core dependency: only a broken install lacks it
        raise ImportError("the autoattack task needs the pyautoattack package "
                          "(pip install pyautoattack)") from exc
    return AutoAttack


@contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Collect what pyautoattack logs at WARNING level (and keep it off the terminal)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger(LOGGER)
    handler, propagate = _Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def is_dynamic(model: nn.Module, x: torch.Tensor) -> bool:
    """AutoAttack's `check_dynamic`: the forward pass itself computes gradients (a defense
    that adapts at test time). Its call counters are module globals that never reset, so they
    are zeroed first: one dynamic model must not flag every later one."""
    from pyautoattack import checks

    for name in checks.funcs:
        checks.funcs[name] = 0
    tracer = sys.gettrace()
    try:  # as pyautoattack calls it: gradients enabled
        with captured_warnings():
            checks.check_dynamic(model, x, False, logger=logging.getLogger(LOGGER))
    finally:
        sys.settrace(tracer)  # check_dynamic clears the tracer: give back a debugger's
    return any(count > 0 for count in checks.funcs.values())


@dataclass(frozen=True)
class StageResult:
    """What one attack stage found: positions (in the stage's input) of the points it broke,
    the model's top-1 class and softmax confidence on their adversarial examples."""

    broken: torch.Tensor
    pred: torch.Tensor
    confidence: torch.Tensor


class Ensemble:
    """pyautoattack's AutoAttack at one budget: `attacks` lists its stages in order."""

    def __init__(self, model: nn.Module, *, norm: str, eps: float, version: str,
                 attacks: Sequence[str], seed: int, device: torch.device) -> None:
        with captured_warnings():
            self.engine = _autoattack_class()(
                model, attacks=list(attacks) if version == "custom" else None, device=device,
                eps=eps, norm=ENGINE_NORMS[norm], seed=seed, version=version)
        self.engine.verbose = False
        self.model, self.norm, self.eps, self.device = model, norm, eps, device
        self.attacks: list[str] = list(self.engine.attacks_to_run)

    def target_classes(self) -> int:
        """The most target classes a targeted stage of this ensemble uses (0: none)."""
        counts = [getattr(self.engine, TARGETED[a]).n_target_classes
                  for a in self.attacks if a in TARGETED]
        return max(counts, default=0)

    def _perturb(self, attack: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One batch of one stage, configured exactly as `run_standard_evaluation` does."""
        aa = self.engine
        if attack in ("apgd-ce", "apgd-dlr"):
            aa.apgd.loss = attack.removeprefix("apgd-")
            aa.apgd.seed = aa.get_seed()
            return aa.apgd.perturb(x, y)
        if attack in ("fab", "fab-t"):
            aa.fab.targeted = attack == "fab-t"
            if attack == "fab-t":
                aa.fab.n_restarts = 1
            aa.fab.seed = aa.get_seed()
            return aa.fab.perturb(x, y)
        if attack == "square":
            aa.square.seed = aa.get_seed()
            return aa.square.perturb(x, y)
        if attack == "apgd-t":
            aa.apgd_targeted.seed = aa.get_seed()
            return aa.apgd_targeted.perturb(x, y)
        raise ValueError(f"unknown AutoAttack attack {attack!r} (known: {', '.join(ATTACKS)})")

    def stage(self, attack: str, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              what: str) -> StageResult:
        """Run `attack` on the points `x` (CPU, all still robust) in batches of `batch_size`,
        in order, as pyautoattack does; every adversarial batch is checked against the budget
        and [0, 1]. Returns the points it broke (top-1 no longer the label)."""
        broken, preds, confidences = [], [], []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = x[start:start + batch_size].clone().to(self.device)
                yb = y[start:start + batch_size].clone().to(self.device)
                adv = self._perturb(attack, xb, yb)
                check_adversarial(xb, adv, norm=self.norm, bounds=(0.0, 1.0), eps=self.eps,
                                  what=f"{what}, {attack} at eps={self.eps:g}")
                logits = self.model(adv)
                pred = logits.argmax(dim=1)
                fooled = (pred != yb).cpu()
                broken.append(torch.nonzero(fooled).flatten() + start)
                preds.append(pred.cpu()[fooled])
                confidences.append(torch.softmax(logits.float(), dim=1).amax(dim=1).cpu()[fooled])
        if not broken:
            empty = torch.zeros(0, dtype=torch.int64)
            return StageResult(empty, empty, torch.zeros(0))
        return StageResult(torch.cat(broken), torch.cat(preds), torch.cat(confidences))
