"""Fixed-budget attacks in the registry's calling convention, which the attack tasks use.

A fixed-budget attack is registered in `registry("attack")` with `budget="fixed"` and the
`norms` it supports, and is called as

    fn(model, x, y, eps, *, norm, bounds, loss, seed, index, grad=None, **options) -> x_adv

`x` is a batch in the attack space and `bounds` its box; `eps` the budget in that space and
`norm` its norm; `loss` the attack loss (`ce` or `bce`); `index` each sample's position in the
evaluated data and `seed` the run's seed, from which any randomness must follow (so numbers do
not depend on batch size); `grad`, when given, is the input gradient of the loss at `x`, shared
across an eps sweep; `options` are the attack's own parameters. The task checks every returned
batch (finite, inside `bounds`, within eps). The generic `attack` task runs any of them; a
plugin adds one with a module like this one.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from attacks.common import Bounds
from attacks.gradient import fgm, ifgsm, pgd
from benchmark.registry import registry


@registry("attack").register("fgsm", budget="fixed", norms="linf, l2", threat="white-box")
def fgsm_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str,
                bounds: Bounds, loss: str, seed: int, index: torch.Tensor,
                grad: torch.Tensor | None = None) -> torch.Tensor:
    """FGSM (Goodfellow et al.; L2: the fast gradient method): one step of eps."""
    return fgm(model, x, y, eps, norm=norm, loss=loss, bounds=bounds, grad=grad)


@registry("attack").register("ifgsm", budget="fixed", norms="linf", threat="white-box")
def ifgsm_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str,
                 bounds: Bounds, loss: str, seed: int, index: torch.Tensor,
                 grad: torch.Tensor | None = None, steps: int = 10, step_factor: float = 1.0
                 ) -> torch.Tensor:
    """I-FGSM (Kurakin et al.): `steps` Linf steps of step_factor * eps / steps from x."""
    return ifgsm(model, x, y, eps, steps=steps, step_size=step_factor * eps / steps, loss=loss,
                 bounds=bounds)


@registry("attack").register("pgd", budget="fixed", norms="linf, l2", threat="white-box")
def pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str,
               bounds: Bounds, loss: str, seed: int, index: torch.Tensor,
               grad: torch.Tensor | None = None, steps: int = 10, step_factor: float = 2.5,
               restarts: int = 1, random_start: bool = True) -> torch.Tensor:
    """PGD (Madry et al.): `steps` of step_factor * eps / steps, seeded random start(s)."""
    return pgd(model, x, y, eps, norm=norm, steps=steps, step_size=step_factor * eps / steps,
               random_start=random_start, restarts=restarts, seed=seed, index=index, loss=loss,
               bounds=bounds)
