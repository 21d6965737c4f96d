"""Fixed-budget gradient attacks, native torch: FGSM / FGM, I-FGSM and PGD (Linf and L2).

All are untargeted (true label), maximize `attack_loss` summed over the batch (so each sample's
gradient is its own) and keep every iterate inside the eps ball and the input bounds. The update
and projection follow foolbox 3.3.4's gradient-descent attacks operation for operation, so the
same gradients give the same adversarial examples; the loop itself is a bare torch loop.

Early stop (`pgd` / `ifgsm` with `early_stop=True`; off by default here and for the generic
`attack` task, on by default in the `ifgsm` and `pgd` tasks): each point keeps the first
iterate whose top-`topk` predictions miss the true label (`topk` = 1: misclassified; the tasks
pass 5 where they report top-5 error, so that number cannot drop either; the forward pass that
computes the step's gradient is the check, so it costs nothing extra) and leaves the batch, so
no further forward or backward pass is spent on it; with restarts, a point broken in one
restart is not attacked again. A point's random start and trajectory depend only
on itself (its noise on (seed, index, restart)), so a point that is never broken ends where the
full run ends it (up to float rounding that another batch composition may cause), and a point
the full run breaks is broken by the early-stopped one too: its robust error can only be >= the
full run's. `early_stop=False` is the full run, bit for bit as before the option existed.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from attacks.common import (
    NORMS,
    Bounds,
    attack_loss,
    check_choice,
    input_gradient,
    unit_noise,
)


def _normalized(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The ascent direction: sign of the gradient (linf) or the gradient over its L2 norm (l2)."""
    if norm == "linf":
        return grad.sign()
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    return grad * (1.0 / norms).view(-1, *([1] * (grad.dim() - 1)))


def _project(x_adv: torch.Tensor, x0: torch.Tensor, eps: float, norm: str, bounds: Bounds
             ) -> torch.Tensor:
    """Back into the eps ball around x0 (clip per pixel / rescale), then into the bounds."""
    delta = x_adv - x0
    if norm == "linf":
        delta = delta.clamp_(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        factor = torch.clamp(eps / norms, max=1.0)
        delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
    return (x0 + delta).clamp_(*bounds)


def fgm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf",
        loss: str = "ce", bounds: Bounds = (0.0, 1.0), grad: torch.Tensor | None = None
        ) -> torch.Tensor:
    """One-step fast gradient method: x + eps * direction(grad), clipped to `bounds`.

    `norm='linf'` is FGSM (sign of the gradient); `norm='l2'` steps eps along the L2-normalized
    gradient. `grad` (the input gradient of `attack_loss` at x) may be passed to share it
    across an eps sweep.
    """
    check_choice("norm", norm, NORMS)
    x0 = x.detach()
    if grad is None:
        grad = input_gradient(model, x0, y, loss)
    with torch.no_grad():
        return _project(x0 + eps * _normalized(grad, norm), x0, eps, norm, bounds)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, loss: str = "ce",
         bounds: Bounds = (0.0, 1.0), grad: torch.Tensor | None = None) -> torch.Tensor:
    """FGSM (Goodfellow et al.): clip(x + eps * sign(grad_x loss(f(x), y)), bounds)."""
    return fgm(model, x, y, eps, norm="linf", loss=loss, bounds=bounds, grad=grad)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf",
        steps: int = 10, step_size: float | None = None, random_start: bool = True,
        restarts: int = 1, seed: int = 0, index: torch.Tensor | None = None, loss: str = "ce",
        bounds: Bounds = (0.0, 1.0), early_stop: bool = False, topk: int = 1) -> torch.Tensor:
    """Projected gradient ascent (Madry et al.) in the `linf` or `l2` ball of radius eps.

    `step_size` is absolute and defaults to 2.5 * eps / steps, which reaches the boundary for any
    number of steps (foolbox's relative default assumes 40). The random start is uniform in the
    ball, drawn per sample from (seed, index, restart) — `index` are the samples' positions in
    the data set (default 0..N-1). With `restarts` > 1 each sample keeps its worst case: a
    misclassifying final iterate over a correct one, then the higher loss.

    `early_stop`: return each point's first iterate whose top-`topk` misses the label and
    attack it no further (see the module docstring); points never broken end as without it.
    """
    check_choice("norm", norm, NORMS)
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start (without it every restart is the same)")
    step = 2.5 * eps / steps if step_size is None else step_size
    x0 = x.detach()
    if index is None:
        index = torch.arange(len(x0))
    if early_stop:
        return _pgd_early_stop(model, x0, y, eps, norm=norm, steps=steps, step=step,
                               random_start=random_start, restarts=restarts, seed=seed,
                               index=index, loss=loss, bounds=bounds, topk=topk)
    best = best_wrong = best_loss = None
    for restart in range(restarts):
        if random_start:
            noise = unit_noise(x0.shape[1:], index, seed, restart, norm).to(x0.device, x0.dtype)
            x_adv = (x0 + eps * noise).clamp_(*bounds)
        else:
            x_adv = x0.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                value = attack_loss(model(x_adv), y, loss).sum()
                (grad,) = torch.autograd.grad(value, x_adv)
            with torch.no_grad():
                x_adv = _project(x_adv.detach() + step * _normalized(grad, norm), x0, eps, norm,
                                 bounds)
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            logits = model(x_adv)
            wrong, value = logits.argmax(dim=1) != y, attack_loss(logits, y, loss)
        if best is None:
            best, best_wrong, best_loss = x_adv, wrong, value
            continue
        better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (value > best_loss))
        best = torch.where(better.view(-1, *([1] * (x0.dim() - 1))), x_adv, best)
        best_wrong, best_loss = best_wrong | wrong, torch.where(better, value, best_loss)
    return best


def ifgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 10,
          step_size: float | None = None, loss: str = "ce", bounds: Bounds = (0.0, 1.0),
          early_stop: bool = False, topk: int = 1) -> torch.Tensor:
    """Iterative FGSM (Kurakin et al.; Mixup's table): Linf PGD from x, no random start.

    `step_size` defaults to eps / steps — Mixup's "10 iterations with equal step size", whose
    steps add up to eps — unlike PGD's 2.5 * eps / steps. `early_stop` as in `pgd`.
    """
    return pgd(model, x, y, eps, norm="linf", steps=steps,
               step_size=eps / steps if step_size is None else step_size,
               random_start=False, loss=loss, bounds=bounds, early_stop=early_stop, topk=topk)


def in_topk(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Per point: the true label is among the `k` highest logits (k = 1: classified right)."""
    if k <= 1:
        return logits.argmax(dim=1) == y
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1)


def _ascend(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
            eps: float, norm: str, steps: int, step: float, loss: str, bounds: Bounds,
            topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`steps` ascent steps from `x_adv`, each point leaving the batch at its first iterate
    whose top-`topk` misses the label: (per point that iterate, else the final one; which were
    broken)."""
    out, broken = x_adv.clone(), torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    active = torch.arange(len(x0), device=x0.device)  # rows of x0 still attacked
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_adv)
            value = attack_loss(logits, y, loss).sum()
            hit = in_topk(logits.detach(), y, topk)
            if not hit.all():  # misclassified iterates are kept; their points leave the batch
                out[active[~hit]] = x_adv.detach()[~hit]
                broken[active[~hit]] = True
                if not hit.any():
                    return out, broken
            (grad,) = torch.autograd.grad(value, x_adv)
        with torch.no_grad():
            x_step = x_adv.detach() + step * _normalized(grad, norm)
            if not hit.all():
                x_step, x0, y, active = x_step[hit], x0[hit], y[hit], active[hit]
            x_adv = _project(x_step, x0, eps, norm, bounds)
    out[active] = x_adv
    return out, broken


def _pgd_early_stop(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: float, *,
                    norm: str, steps: int, step: float, random_start: bool, restarts: int,
                    seed: int, index: torch.Tensor, loss: str, bounds: Bounds, topk: int
                    ) -> torch.Tensor:
    """`pgd` with early stop: per restart, only the points no earlier restart broke (their
    label out of the top-`topk`); among the others' final iterates, as `pgd`, a misclassifying
    one over a correct one, then the higher loss."""
    best = x0.clone()
    done = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)  # broken: kept as is
    best_wrong = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    best_loss = torch.full((len(x0),), -torch.inf, device=x0.device)
    for restart in range(restarts):
        rows = (~done).nonzero().flatten()
        if len(rows) == 0:
            break
        xr, yr = x0[rows], y[rows]
        if random_start:
            noise = unit_noise(x0.shape[1:], index[rows.cpu()], seed, restart, norm)
            x_adv = (xr + eps * noise.to(x0.device, x0.dtype)).clamp_(*bounds)
        else:
            x_adv = xr.clone()
        x_adv, broken = _ascend(model, xr, yr, x_adv, eps, norm, steps, step, loss, bounds,
                                topk)
        if restarts == 1:
            return x_adv
        best[rows[broken]] = x_adv[broken]
        done[rows[broken]] = True
        left = ~broken  # their final iterates: misclassified ones end the attack on them,
        if left.any():  # else a higher loss than the earlier restarts' is kept
            rows, x_adv = rows[left], x_adv[left]
            with torch.no_grad():
                logits = model(x_adv)
                wrong, value = logits.argmax(dim=1) != y[rows], attack_loss(logits, y[rows], loss)
            was_wrong = best_wrong[rows]
            out = ~in_topk(logits, y[rows], topk)  # broken at its end: kept, attacked no more
            better = out | (wrong & ~was_wrong) | ((wrong == was_wrong)
                                                  & (value > best_loss[rows]))
            best[rows[better]] = x_adv[better]
            best_loss[rows[better]] = value[better]
            best_wrong[rows[better]] = wrong[better]
            done[rows[out]] = True
    return best
