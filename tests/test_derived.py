"""The per-image worst case over a suite's attacks, from their records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_runner import make_zoo

from benchmark.cli import main
from benchmark.derived import worst_case
from benchmark.records import Records
from benchmark.stats import Metric
from benchmark.store import StoredUnit

BASE = {"space": "pixel", "norm": "linf"}


def _unit(task: str, task_type: str, records: Records, **params) -> tuple:
    return ("m", "sha", task, f"cfg-{task}"), StoredUnit(task_type, params, 0), records


def test_worst_case_is_the_union_of_each_tasks_own_breaks():
    n = 10
    index = np.arange(n)
    fgsm, pgd, deepfool, cw = Records(), Records(), Records(), Records()
    fgsm.add({"eps": 0.1, **BASE}, index=index, correct=index >= 2)  # breaks 0, 1
    pgd.add({"eps": 0.1, **BASE, "attack": "fgsm"}, index=index, correct=index != 9)  # ignored
    pgd.add({"eps": 0.1, **BASE, "attack": "pgd"}, index=index, correct=index != 1)  # breaks 1
    norms = np.full(n, np.inf)
    norms[[4, 5]] = [0.05, 0.2]  # broken within 0.1: image 4 only
    deepfool.add(BASE, index=index, perturbation_norm=norms, correct=np.ones(n, bool))
    cw.add(BASE, index=index[:5], perturbation_norm=np.zeros(5),  # another subset
           correct=np.ones(5, bool))
    rows = worst_case([_unit("fgsm", "fgsm", fgsm), _unit("pgd", "pgd", pgd),
                       _unit("deepfool_linf", "deepfool", deepfool, eps=[0.1, 0.3]),
                       _unit("cw", "cw", cw, eps=[0.1])])
    by_eps = {row.metric.conditions["eps"]: row.metric for row in rows}
    assert sorted(by_eps) == [0.1, 0.3]
    expected = Metric.rate("top1_err", 3, n, conditions={
        "eps": 0.1, **BASE, "attacks": "deepfool_linf, fgsm, pgd"})  # images 0, 1, 4
    assert by_eps[0.1] == expected
    assert by_eps[0.3].value == pytest.approx(20.0)  # only deepfool reaches 0.3: images 4, 5
    assert by_eps[0.3].conditions["attacks"] == "deepfool_linf"
    assert {row.task for row in rows} == {"worst_case"}


@pytest.mark.slow
def test_worst_case_rows_agree_with_the_exported_samples(tmp_path: Path):
    make_zoo(tmp_path / "zoo", seeds=(0,))
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", "digits", "--tasks",
                 "fgsm,pgd,ifgsm", "--data-root", str(tmp_path / "data"), "--limit", "60",
                 "--out", str(out), "--no-progress"]) == 0
    results = pd.read_csv(out / "results.csv")
    worst = results[results.task == "worst_case"]
    assert len(worst) and set(worst["metric"]) == {"top1_err"}
    attack_rows = results[results.task.isin(["fgsm", "pgd", "ifgsm"])
                          & (results.metric == "top1_err")]
    for _, row in worst.iterrows():
        same = attack_rows[(attack_rows.eps == row.eps) & (attack_rows.norm == row.norm)]
        assert set(same.task) == set(row.attacks.split(", "))
        assert row.value >= same.value.max()  # the worst case is at least every attack's
    assert main(["export", str(out), "--samples", "-o", str(tmp_path / "s.csv")]) == 0
    samples = pd.read_csv(tmp_path / "s.csv")
    own = samples[samples.eps.notna() & (samples.attack.isna() | (samples.attack == samples.task))]
    for _, row in worst.iterrows():
        at = own[(own.eps == row.eps) & (own.norm == row.norm)]
        broken = at.groupby("index")["correct"].min() == 0
        assert 100 * broken.mean() == pytest.approx(row.value)
    # every attack row pairs with itself: p = 1, nothing discordant
    from benchmark.paired import Pairing, store_units
    from benchmark.records import condition_key

    units = store_units(out)
    pairing = Pairing(units, units)
    for _, row in attack_rows.iterrows():
        conditions = {c: row[c] for c in ("eps", "space", "norm")}
        test = pairing.test((row.checkpoint, row.task, "top1_err", condition_key(conditions)))
        assert test is not None and test.p_value == 1.0
