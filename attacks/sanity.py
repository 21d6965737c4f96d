"""Sanity checks of an adversarial evaluation (Carlini et al. 2019): signs that numbers mislead.

Each returns plain booleans / masks; the harness turns them into recorded 0/1 flags.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def outputs_differ(first: torch.Tensor, second: torch.Tensor, rtol: float = 1e-4) -> bool:
    """True when two passes' outputs differ: max |a - b| > rtol * max(1, max |a|).

    The tolerance is far above float reordering noise (batch composition, thread count).
    """
    if first.numel() == 0:
        return False
    first, second = first.detach().double(), second.detach().double().to(first.device)
    scale = max(1.0, first.abs().max().item())
    return bool((first - second).abs().max().item() > rtol * scale)


def outputs_randomized(model: nn.Module, x: torch.Tensor, rtol: float = 1e-4) -> bool:
    """True when two forward passes on the same batch differ (dropout / noise at test time)."""
    with torch.no_grad():
        return outputs_differ(model(x), model(x), rtol)


def probability_rows(outputs: torch.Tensor, atol: float = 1e-4) -> torch.Tensor:
    """Per-sample mask: the row is a probability vector (in [0, 1], sums to 1), as a softmax
    output is. Attacks on softmaxed outputs see saturated, near-zero gradients (masking)."""
    outputs = outputs.double()
    in_range = ((outputs >= -atol) & (outputs <= 1 + atol)).all(dim=1)
    return in_range & ((outputs.sum(dim=1) - 1).abs() <= 1e-3)


def zero_gradients(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample mask: the input gradient is exactly zero everywhere (the attack cannot move)."""
    return (grad.flatten(1) == 0).all(dim=1)


