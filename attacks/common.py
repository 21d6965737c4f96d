"""Shared pieces of the attacks: losses, attack spaces, per-sample noise and the budget check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("linf", "l2")
CHECKED_NORMS = (*NORMS, "l1")  # AutoAttack also attacks in L1
LOSSES = ("ce", "bce")
SPACES = ("pixel", "normalized")
TOLERANCE = 1e-6  # slack of the budget and bounds checks, in the attack space's units

Bounds = tuple[float, float]


class BudgetError(ValueError):
    """An adversarial batch outside its norm budget or its input bounds: an attack bug."""


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`, else a ValueError naming the option."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def attack_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Per-sample loss an untargeted attack maximizes (summing it keeps samples independent).

    `ce`: cross-entropy of the logits (the default everywhere). `bce`: Manifold Mixup's
    `BCELoss(softmax(logits), one_hot(y))`, summed over classes (its reference code averages,
    which only rescales the gradient; log terms are clamped at -100 as torch's BCE does).
    """
    check_choice("loss", loss, LOSSES)
    if loss == "ce":
        return F.cross_entropy(logits, labels, reduction="none")
    probs = torch.softmax(logits, dim=1)
    target = F.one_hot(labels, logits.shape[1]).to(probs.dtype)
    return F.binary_cross_entropy(probs, target, reduction="none").sum(dim=1)


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs at x, gradient of the summed per-sample attack loss with respect to x)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        outputs = model(x)
        (grad,) = torch.autograd.grad(attack_loss(outputs, y, loss).sum(), x)
    return outputs.detach(), grad


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce"
                   ) -> torch.Tensor:
    """Gradient of the summed per-sample attack loss with respect to the input batch."""
    return loss_gradient(model, x, y, loss)[1]


def perturbation_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample `linf`, `l2` or `l1` norm of a batch of perturbations, in float64."""
    flat = delta.detach().flatten(1).double()
    if check_choice("norm", norm, CHECKED_NORMS) == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(len(flat))
    return flat.norm(dim=1) if norm == "l2" else flat.abs().sum(dim=1)


def check_adversarial(x: torch.Tensor, x_adv: torch.Tensor, *, norm: str,
                      bounds: Bounds, eps: float | None = None, what: str = "attack") -> None:
    """Raise BudgetError unless every example is finite, inside `bounds` and within `eps`.

    The checks run in the space the attack worked in; `eps=None` (minimal-perturbation attacks)
    checks only finiteness and bounds. Slack: TOLERANCE on both.
    """
    if x_adv.shape != x.shape:
        raise BudgetError(f"{what}: adversarial batch has shape {tuple(x_adv.shape)}, "
                          f"the inputs {tuple(x.shape)}")
    flat = x_adv.detach().flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    if not finite.all():
        raise BudgetError(f"{what}: {int((~finite).sum())} adversarial example(s) contain "
                          "NaN or infinite values")
    lo, hi = bounds
    inside = ((flat >= lo - TOLERANCE) & (flat <= hi + TOLERANCE)).all(dim=1)
    if not inside.all():
        raise BudgetError(f"{what}: {int((~inside).sum())} of {len(flat)} adversarial example(s) "
                          f"leave the input bounds [{lo:g}, {hi:g}] (min {flat.min().item():.6g}, "
                          f"max {flat.max().item():.6g})")
    if eps is None:
        return
    norms = perturbation_norms(x_adv - x, norm)
    within = norms <= eps + TOLERANCE * max(1.0, eps)  # relative beyond 1: float32 L1 norms
    if not within.all():
        raise BudgetError(f"{what}: {int((~within).sum())} of {len(norms)} adversarial "
                          f"example(s) exceed the budget: max {norm} norm "
                          f"{norms.max().item():.8g} > eps {eps:g} (+{TOLERANCE:g})")


class Denormalized(nn.Module):
    """`model` seen from normalized space: takes (x - mean) / std, feeds the model x."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z * self.std + self.mean)


@dataclass(frozen=True)
class AttackSpace:
    """Where an attack runs: the model seen from that space, the batch in it, and its bounds.

    `pixel`: the [0, 1] images themselves, bounds (0, 1). `normalized` (PatchUp's convention):
    z = (x - mean) / std, bounds = the batch's min and max of z (so they depend on the batch),
    eps measured on z; the pixel image z * std + mean may then leave [0, 1] slightly.
    """

    space: str
    model: nn.Module
    x: torch.Tensor
    bounds: Bounds
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    def to_pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Images for the original ([0, 1]-input) model from points of this space."""
        return z if self.space == "pixel" else z * self.std + self.mean


def attack_space(model: nn.Module, x: torch.Tensor, space: str = "pixel",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                 ) -> AttackSpace:
    """The AttackSpace of batch `x` ([0, 1] images) for `model` ([0, 1] input)."""
    if check_choice("space", space, SPACES) == "pixel":
        return AttackSpace("pixel", model, x, (0.0, 1.0))
    if mean is None or std is None:
        raise ValueError("space 'normalized' needs the model's mean and std")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    z = (x - mean_t) / std_t
    return AttackSpace("normalized", Denormalized(model, mean_t, std_t), z,
                       (z.min().item(), z.max().item()), mean_t, std_t)


def unit_noise(shape: Sequence[int], index: torch.Tensor, seed: int, restart: int, norm: str
               ) -> torch.Tensor:
    """Random-start directions scaled to eps = 1, one per sample, from (seed, index, restart).

    `linf`: uniform in [-1, 1]^d; `l2`: uniform in the unit L2 ball (Voelker et al.: the first d
    coordinates of a uniform point on the sphere in d + 2 dimensions). Drawn on the CPU with
    numpy, so the numbers do not depend on batch size, order or device.
    """
    d = int(np.prod(shape))
    rows = []
    for i in index.tolist():
        rng = np.random.default_rng([seed, i, restart, NORMS.index(norm)])
        if norm == "linf":
            rows.append(rng.uniform(-1.0, 1.0, d))
        else:
            point = rng.standard_normal(d + 2)
            rows.append(point[:d] / np.linalg.norm(point))
    return torch.from_numpy(np.stack(rows).astype(np.float32)).view(len(rows), *shape)
