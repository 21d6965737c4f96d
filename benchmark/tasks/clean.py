"""Clean accuracy task (top-k error, NLL) from the shared clean forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.params import param
from benchmark.records import Records
from benchmark.tasks.registry import Axis, TaskContext, classification_columns, register_task
from ood.calibration import nll_per_sample


@dataclass(frozen=True)
class CleanParams:
    """`topk`: the k of the top-k errors (top-5 only with more than 5 classes)."""

    topk: list[int] = param([1, 5], ge=1, nonempty=True, distinct=True)


@register_task("clean", params=CleanParams, version=2,
               axis=lambda params, n: Axis(n))
def clean(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Top-k error (percent) and NLL (nats, with a bootstrap interval) on the clean data."""
    positions = np.arange(len(ctx.data))[ctx.part(len(ctx.data))]
    logits, labels = ctx.clean_logits_at(positions), ctx.labels()[positions]
    records = Records()
    records.add(index=positions,
                **classification_columns(logits, labels, tuple(params["topk"])),
                nll=nll_per_sample(logits.double().numpy(), labels.numpy()))
    return records
