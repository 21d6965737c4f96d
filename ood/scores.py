"""OOD scores from a classifier, higher = more in-distribution: MSP, max logit, energy, ODIN.

Scores are float64 numpy arrays computed on the CPU from logits (numpy arrays or tensors): in
float64 so that confident predictions do not all saturate to a tied MSP of exactly 1.0, in numpy
because for a few thousand logits torch's thread pool costs more than the arithmetic. ODIN needs
input gradients, so it takes the model and [0, 1] images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from benchmark.registry import registry
from ood.metrics import tnr_at_tpr95

__all__ = [
    "ODIN_EPS",
    "ODIN_EPS_GRID",
    "ODIN_TEMPERATURE",
    "ODIN_TEMPERATURES",
    "energy",
    "maxlogit",
    "msp",
    "odin",
    "odin_gradient_sign",
    "odin_scores",
    "tune_odin",
]

# ODIN (Liang et al. 2018): its CIFAR setting, and the grid it tunes T and eps over.
ODIN_TEMPERATURE = 1000.0
ODIN_EPS = 0.0014
ODIN_TEMPERATURES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
ODIN_EPS_GRID = tuple(float(e) for e in np.linspace(0.0, 0.004, 21))


def _as_logits(logits: torch.Tensor | ArrayLike) -> NDArray[np.float64]:
    """(N, K) logits as a float64 numpy array on the CPU."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().double().numpy()
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"logits must have shape (N, K) with K >= 1, got {z.shape}")
    return z


@registry("scorer").register("msp", needs="logits")
def msp(logits: torch.Tensor | ArrayLike) -> NDArray[np.float64]:
    """Maximum softmax probability (Hendrycks & Gimpel 2017): 1 / sum_k exp(z_k - max z)."""
    z = _as_logits(logits)
    return 1.0 / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)


@registry("scorer").register("maxlogit", needs="logits")
def maxlogit(logits: torch.Tensor | ArrayLike) -> NDArray[np.float64]:
    """Largest logit (Hendrycks et al. 2022)."""
    return _as_logits(logits).max(axis=1)


@registry("scorer").register("energy", needs="logits")
def energy(logits: torch.Tensor | ArrayLike, temperature: float = 1.0) -> NDArray[np.float64]:
    """Negative free energy T * logsumexp(logits / T) (Liu et al. 2020)."""
    if temperature <= 0:
        raise ValueError(f"energy temperature must be > 0, got {temperature}")
    z = _as_logits(logits) / temperature
    top = z.max(axis=1)
    return temperature * (top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


def odin_gradient_sign(model: nn.Module, images: torch.Tensor, temperature: float
                       ) -> torch.Tensor:
    """Sign of d CE(f(x) / T, argmax f(x)) / dx for [0, 1] images, as ODIN's code takes it.

    ODIN maps a gradient >= 0 to +1 and < 0 to -1 (a zero gradient counts as +1). The loss is
    summed over the batch; with the model in eval mode each sample's gradient is its own, so the
    result does not depend on the batch size.
    """
    if temperature <= 0:
        raise ValueError(f"ODIN temperature must be > 0, got {temperature}")
    with torch.enable_grad():
        x = images.detach().clone().requires_grad_(True)
        logits = model(x).float() / temperature
        loss = nn.functional.cross_entropy(logits, logits.argmax(dim=1), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return torch.where(grad >= 0, 1.0, -1.0).to(images.dtype)


def odin_scores(model: nn.Module, images: torch.Tensor, sign: torch.Tensor, temperature: float,
                eps: float) -> NDArray[np.float64]:
    """MSP at temperature T of the images moved by -eps * sign (no clipping, as in ODIN)."""
    with torch.no_grad():
        logits = model(images - eps * sign)
    return msp(_as_logits(logits) / temperature)


@registry("scorer").register("odin", needs="model")
def odin(model: nn.Module, images: torch.Tensor, temperature: float = ODIN_TEMPERATURE,
         eps: float = ODIN_EPS) -> NDArray[np.float64]:
    """ODIN score (Liang et al. 2018) of a batch of [0, 1] images.

    x' = x - eps * sign(grad_x CE(f(x) / T, y_hat)), score = max softmax(f(x') / T). ODIN's code
    perturbs normalized inputs by eps / std per channel, which is eps in [0, 1] pixel space, so
    its eps values carry over unchanged. x' is not clipped to [0, 1] (ODIN does not clip).
    """
    sign = odin_gradient_sign(model, images, temperature)
    return odin_scores(model, images, sign, temperature, eps)


def tune_odin(model: nn.Module, id_images: torch.Tensor, ood_images: torch.Tensor,
              batch_size: int, device: torch.device | str = "cpu",
              temperatures: Sequence[float] = ODIN_TEMPERATURES,
              eps_grid: Sequence[float] = ODIN_EPS_GRID
              ) -> tuple[float, float, dict[tuple[float, float], float]]:
    """Grid-search ODIN's (T, eps) on held-out ID and OOD images; returns (T, eps, TNR table).

    Images are float [0, 1] tensors, moved to `device` one batch at a time. The criterion is
    TNR at 95 % TPR (ID positive, see `ood.metrics`), ties broken by the grid order (smaller T
    first, then smaller eps). The images must not be the test OOD set. One backward pass per
    temperature (the gradient sign does not depend on eps), one forward per (T, eps).
    """
    if not temperatures or not eps_grid:
        raise ValueError("ODIN tuning needs at least one temperature and one eps")
    table: dict[tuple[float, float], float] = {}
    for temperature in temperatures:
        scores: dict[float, list[list[np.ndarray]]] = {eps: [[], []] for eps in eps_grid}
        for side, images in enumerate((id_images, ood_images)):
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size].to(device)
                sign = odin_gradient_sign(model, batch, temperature)
                for eps in eps_grid:
                    scores[eps][side].append(odin_scores(model, batch, sign, temperature, eps))
        for eps in eps_grid:
            id_s, ood_s = (np.concatenate(part) for part in scores[eps])
            table[(float(temperature), float(eps))] = tnr_at_tpr95(id_s, ood_s)
    best = max(table, key=lambda key: table[key])  # max keeps the first of equal values
    return best[0], best[1], table
