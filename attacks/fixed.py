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

A task passes only the points still worth attacking: never those misclassified when clean,
and in a nested eps sweep only those robust at every smaller eps (`benchmark.tasks.attacks`).
So `x` may be any subset of a data batch (with its `index`, `y`, `grad` rows; `bounds` stay
the whole batch's): an attack must treat each point on its own.
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
                 grad: torch.Tensor | None = None, steps: int = 10, step_factor: float = 1.0,
                 early_stop: bool = False, topk: int = 1) -> torch.Tensor:
    """I-FGSM (Kurakin et al.): `steps` Linf steps of step_factor * eps / steps from x
    (`early_stop`: each point's first iterate out of the top-`topk`, see `attacks.gradient`)."""
    return ifgsm(model, x, y, eps, steps=steps, step_size=step_factor * eps / steps, loss=loss,
                 bounds=bounds, early_stop=early_stop, topk=topk)


@registry("attack").register("pgd", budget="fixed", norms="linf, l2", threat="white-box")
def pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str,
               bounds: Bounds, loss: str, seed: int, index: torch.Tensor,
               grad: torch.Tensor | None = None, steps: int = 10, step_factor: float = 2.5,
               restarts: int = 1, random_start: bool = True, early_stop: bool = False,
               topk: int = 1) -> torch.Tensor:
    """PGD (Madry et al.): `steps` of step_factor * eps / steps, seeded random start(s)
    (`early_stop`: each point's first iterate out of the top-`topk`, see `attacks.gradient`)."""
    return pgd(model, x, y, eps, norm=norm, steps=steps, step_size=step_factor * eps / steps,
               random_start=random_start, restarts=restarts, seed=seed, index=index, loss=loss,
               bounds=bounds, early_stop=early_stop, topk=topk)
