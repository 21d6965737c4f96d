"""Task `selective`: selective prediction (risk-coverage) from the shared clean forward pass.

A selective classifier abstains on the images whose confidence is below a threshold. Per
confidence ``scorer`` (condition ``scorer``), rows (percent; definitions, the tie convention and
the comparison with torch-uncertainty in `benchmark.reductions.selective`):

- ``aurc``: area under the risk-coverage curve (Geifman & El-Yaniv 2017), lower is better;
- ``augrc``: area under the generalized risk-coverage curve (Traub et al. 2024: the mean over
  coverage of P(accepted and wrong)), lower is better;
- ``selective_risk`` per ``coverage`` c: the error rate among the ceil(c n / 100) most confident
  images (a tie group straddling the cut is accepted whole), lower is better;
- ``coverage_at_risk`` per ``risk`` r: the largest coverage whose selective risk is <= r (0 if
  none), higher is better.

Images of equal confidence are always accepted or rejected together. Each row has a 95 %
percentile bootstrap interval over images (``bootstrap`` resamples, default 1000; 0 = none).

Parameters: ``scorers`` (default ``["msp"]``): scorers of `registry("scorer")` that are
functions of the logits (``msp``, ``maxlogit``, ``energy`` at temperature 1, or one a plugin
registers with ``needs="logits"``); higher = more confident. ODIN perturbs the input and needs
its own passes, so it is refused when the suite loads. ``coverages`` (default [80, 90, 95]) and
``risks`` (default [1, 5]), in percent.

Records: one table per scorer with ``index`` (position in the evaluated data), ``correct`` (top-1
hit of the clean logits: the first maximal logit) and ``confidence`` (the scorer's score,
float64). No forward pass beyond the shared clean one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import ood.scores  # noqa: F401  (registers the built-in scorers)
from benchmark.errors import SuiteError
from benchmark.params import param
from benchmark.records import Records
from benchmark.registry import registry
from benchmark.tasks.registry import TaskContext, register_task


@dataclass(frozen=True)
class SelectiveParams:
    """See the module docstring."""

    scorers: list[str] = param(["msp"], nonempty=True, distinct=True)
    coverages: list[float] = param([80, 90, 95], gt=0, le=100, nonempty=True, distinct=True)
    risks: list[float] = param([1, 5], ge=0, le=100, nonempty=True, distinct=True)
    bootstrap: int = param(1000, ge=0, le=100_000)

    def __post_init__(self) -> None:
        scorers = registry("scorer")
        for scorer in self.scorers:
            if scorer not in scorers:
                raise SuiteError(f"parameter 'scorers': unknown scorer {scorer!r}"
                                 f"{scorers.hint(scorer)}; registered: "
                                 f"{', '.join(scorers.names())}")
            if scorers.entry(scorer).info.get("needs") != "logits":
                raise SuiteError(f"parameter 'scorers': scorer {scorer!r} is not a function of "
                                 "the logits (it needs the model and the images, as ODIN's "
                                 "input perturbation does); selective scores the shared clean "
                                 "logits only")


@register_task("selective", params=SelectiveParams, version=1)
def selective(ctx: TaskContext, params: dict[str, Any]) -> Records:
    """Selective prediction per scorer: AURC, AUGRC, risk at coverage, coverage at risk."""
    logits = ctx.clean_logits()
    correct = (logits.argmax(dim=1) == ctx.labels()).numpy()
    z = logits.double().numpy()
    records = Records()
    index = np.arange(len(correct), dtype=np.int64)
    for scorer in params["scorers"]:
        scores = np.asarray(registry("scorer").get(scorer)(z), dtype=np.float64)
        records.add({"scorer": scorer}, index=index, correct=correct, confidence=scores)
    return records
