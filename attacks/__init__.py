"""Adversarial evaluation over any `nn.Module` taking [0, 1] images: attacks and sanity checks.

Fixed-budget attacks (native torch): `fgsm`, `fgm`, `ifgsm`, `pgd` (Linf / L2). Minimal-perturbation
attacks: `deepfool` (native, checked against foolbox), `carlini_wagner` and `ddn` (foolbox).
Conventions are options: `attack_space(..., space='pixel' | 'normalized')`, `loss='ce' | 'bce'`.
`check_adversarial` enforces the budget and bounds; `attacks.sanity` holds the sanity checks.
"""

from attacks.common import (
    AttackSpace,
    BudgetError,
    attack_loss,
    attack_space,
    check_adversarial,
    input_gradient,
    loss_gradient,
    perturbation_norms,
)
from attacks.gradient import fgm, fgsm, ifgsm, pgd
from attacks.minimal import MinimalResult, carlini_wagner, ddn, deepfool

__all__ = ["AttackSpace", "BudgetError", "MinimalResult", "attack_loss", "attack_space",
           "carlini_wagner", "check_adversarial", "ddn", "deepfool", "fgm", "fgsm", "ifgsm",
           "input_gradient", "loss_gradient", "perturbation_norms", "pgd"]
