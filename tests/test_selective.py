"""Task `selective` and its reduction: AURC, AUGRC, selective risk at coverage, coverage at risk."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.data import EvalData, stratified_subset
from benchmark.datasets import read_digits
from benchmark.errors import SuiteError
from benchmark.reductions.selective import selective_metrics
from benchmark.stats import bootstrap_resamples, metric_stream
from benchmark.tasks import TaskContext, get_task, resolve_params
from ood.scores import energy, msp

COVERAGES, RISKS = [20, 40, 50, 80, 90, 95, 100], [0, 1, 5, 10, 30, 50, 100]


def values(metrics) -> dict:
    """{(metric, coverage or risk or None): value}."""
    return {(m.metric, m.conditions.get("coverage", m.conditions.get("risk"))): m.value
            for m in metrics}


def ours(correct, conf, coverages=COVERAGES, risks=RISKS, resamples=0, seed=0) -> dict:
    return values(selective_metrics(np.asarray(correct), np.asarray(conf), coverages, risks,
                                    {"scorer": "msp"}, seed, resamples))


def brute_force(correct, conf, coverages=COVERAGES, risks=RISKS) -> dict:
    """The module docstring's definitions, one threshold at a time: every distinct confidence t
    is a threshold accepting {conf >= t} (ties together)."""
    correct, conf = np.asarray(correct, dtype=bool), np.asarray(conf, dtype=float)
    n = len(conf)
    points = []  # (coverage, selective risk, generalized risk, accepted, errors), cov ascending
    for t in sorted(set(conf.tolist()), reverse=True):
        accepted = conf >= t
        k, e = int(accepted.sum()), int((accepted & ~correct).sum())
        points.append((k / n, e / k, e / n, k, e))
    out = {}
    aurc = augrc = 0.0
    prev_cov, prev_g = 0.0, 0.0
    for cov, r, g, _, _ in points:
        aurc += (cov - prev_cov) * r
        augrc += (cov - prev_cov) * (prev_g + g) / 2
        prev_cov, prev_g = cov, g
    out[("aurc", None)], out[("augrc", None)] = 100 * aurc, 100 * augrc
    for c in coverages:
        need = -(-c * n // 100)  # exact integer ceil(c n / 100)
        out[("selective_risk", c)] = 100 * next(r for _, r, _, k, _ in points if k >= need)
    for risk in risks:
        ok = [cov for cov, _, _, k, e in points if 100 * e <= risk * k]
        out[("coverage_at_risk", risk)] = 100 * max(ok, default=0.0)
    return out


def midrank_auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + P(pos = neg) / 2, by counting pairs."""
    greater = (pos[:, None] > neg[None, :]).sum()
    equal = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * equal) / (len(pos) * len(neg))


# --- torch-uncertainty's definitions (not a dependency; written from its definition) --------
# Mirrors torch_uncertainty/metrics/classification/risk_coverage.py (ENSTA-U2IS-AI/
# torch-uncertainty, src/ layout, 2025-2026): `_aurc_rejection_rate_compute` (errors sorted by
# descending score, cumulative error rate R_k = E_k / k), `AURC.compute` (trapezoid of R_k over
# k / n, k = 1..n, divided by 1 - 1/n), `AUGRC.compute` (the same of R_k * k / n),
# `RiskAtxCov.compute` (R at k = ceil(n c)) and `CovAtxRisk.compute` (the largest k / n with
# R_k <= r). Only used on tie-free scores, where its sort order is unique.
def tu_rates(correct, conf) -> np.ndarray:
    errors = (~np.asarray(correct, dtype=bool))[np.argsort(-np.asarray(conf))].astype(float)
    return np.cumsum(errors) / np.arange(1, len(errors) + 1)


def tu_aurc(correct, conf) -> float:
    rates = tu_rates(correct, conf)
    n = len(rates)
    return float(np.trapezoid(rates, np.arange(1, n + 1) / n) / (1 - 1 / n))


def tu_augrc(correct, conf) -> float:
    rates = tu_rates(correct, conf)
    n = len(rates)
    cov = np.arange(1, n + 1) / n
    return float(np.trapezoid(rates * cov, cov) / (1 - 1 / n))


def tu_risk_at_cov(correct, conf, cov: float) -> float:
    rates = tu_rates(correct, conf)
    return float(rates[math.ceil(len(rates) * cov) - 1])


def tu_cov_at_risk(correct, conf, risk: float) -> float:
    rates = tu_rates(correct, conf)
    ok = np.flatnonzero(rates <= risk)
    return float((ok[-1] + 1) / len(rates)) if ok.size else math.nan


def random_case(seed: int, n: int, decimals: int | None = 2):
    rng = np.random.default_rng(seed)
    conf = rng.random(n)
    correct = rng.random(n) < 0.3 + 0.6 * conf  # confidence is informative
    return correct, (np.round(conf, decimals) if decimals is not None else conf)


# --- reduction ------------------------------------------------------------------------------
def test_hand_computed_five_samples():
    # groups by confidence: {0.9: ok} {0.8: wrong, ok} {0.6: ok} {0.5: wrong}
    # points (coverage, selective risk, generalized risk): (.2, 0, 0) (.6, 1/3, .2)
    # (.8, 1/4, .2) (1, 2/5, .4)
    conf = [0.9, 0.8, 0.8, 0.6, 0.5]
    correct = [True, False, True, True, False]
    got = ours(correct, conf)
    assert got[("aurc", None)] == pytest.approx(100 * (0.4 / 3 + 0.2 / 4 + 0.2 * 2 / 5))
    assert got[("augrc", None)] == pytest.approx(14.0)  # .4 * .1 + .2 * .2 + .2 * .3
    assert got[("selective_risk", 20)] == 0.0
    assert got[("selective_risk", 40)] == pytest.approx(100 / 3)  # the 0.8 pair accepted whole
    assert got[("selective_risk", 80)] == pytest.approx(25.0)
    assert got[("selective_risk", 100)] == pytest.approx(40.0)
    assert got[("coverage_at_risk", 0)] == pytest.approx(20.0)
    assert got[("coverage_at_risk", 30)] == pytest.approx(80.0)
    assert got[("coverage_at_risk", 50)] == pytest.approx(100.0)
    assert ours([False, True], [0.9, 0.1])[("coverage_at_risk", 0)] == 0.0  # none qualifies


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_matches_brute_force_with_ties(seed, decimals):
    correct, conf = random_case(seed, 37 + 41 * seed, decimals)
    got, want = ours(correct, conf), brute_force(correct, conf)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("seed", range(4))
def test_augrc_closed_form(seed):
    # Traub et al.: AUGRC = pi^2 / 2 + pi (1 - pi) (1 - AUROC_f), ties at half credit
    correct, conf = random_case(seed, 300, 1)
    pi = 1 - correct.mean()
    auroc = midrank_auroc(conf[correct], conf[~correct])
    closed = 100 * (pi**2 / 2 + pi * (1 - pi) * (1 - auroc))
    assert ours(correct, conf)[("augrc", None)] == pytest.approx(closed, abs=1e-9)


def test_ties_do_not_depend_on_order():
    correct, conf = random_case(3, 200, 1)
    perm = np.random.default_rng(0).permutation(200)
    assert ours(correct, conf) == pytest.approx(ours(correct[perm], conf[perm]))


@pytest.mark.parametrize("seed", range(4))
def test_against_torch_uncertainty_without_ties(seed):
    n = 400
    correct, conf = random_case(seed, n, None)
    assert len(set(conf.tolist())) == n
    got = ours(correct, conf, coverages=[80, 90, 95], risks=[5, 10, 20, 30])
    bound = 100 / (n - 1)  # the module docstring's bound on the trapezoid's difference
    assert abs(got[("aurc", None)] - 100 * tu_aurc(correct, conf)) <= bound
    assert abs(got[("augrc", None)] - 100 * tu_augrc(correct, conf)) <= bound
    for c in (80, 90, 95):
        assert math.ceil(n * c / 100) == c * n // 100  # the same k as ours here
        assert got[("selective_risk", c)] == pytest.approx(
            100 * tu_risk_at_cov(correct, conf, c / 100))
    for r in (5, 10, 20, 30):
        want = tu_cov_at_risk(correct, conf, r / 100)
        assert got[("coverage_at_risk", r)] == pytest.approx(0.0 if math.isnan(want)
                                                             else 100 * want)


def test_coverage_float_rounding():
    # 1.1 % of 50,000 images is 550 images, though 1.1 * 50000 / 100 = 550.0000000000001
    n = 50_000
    assert 1.1 * n / 100 > 550
    conf = np.linspace(1, 0, n)
    correct = np.ones(n, dtype=bool)
    correct[550] = False  # the 551st most confident image is wrong
    got = ours(correct, conf, coverages=[1.1, 1.102], risks=[0])
    assert got[("selective_risk", 1.1)] == 0.0
    assert got[("selective_risk", 1.102)] == pytest.approx(100 / 551)
    assert got[("coverage_at_risk", 0)] == pytest.approx(1.1)


def test_bootstrap_intervals():
    correct, conf = random_case(1, 300, 2)
    metrics = selective_metrics(correct, conf, [80, 90], [5, 20], {"scorer": "msp"}, 7, 300)
    for m in metrics:
        assert m.ci_low <= m.value <= m.ci_high, m
        assert m.n == 300
    again = selective_metrics(correct, conf, [80, 90], [5, 20], {"scorer": "msp"}, 7, 300)
    assert [(m.ci_low, m.ci_high) for m in again] == [(m.ci_low, m.ci_high) for m in metrics]
    other = selective_metrics(correct, conf, [80, 90], [5, 20], {"scorer": "msp"}, 8, 300)
    assert [(m.ci_low, m.ci_high) for m in other] != [(m.ci_low, m.ci_high) for m in metrics]
    none = selective_metrics(correct, conf, [80], [5], {"scorer": "msp"}, 7, 0)
    assert all(m.ci_low is None and m.ci_high is None for m in none)
    assert {m.metric: m.higher_is_better for m in metrics} == {
        "aurc": False, "augrc": False, "selective_risk": False, "coverage_at_risk": True}


def test_vectorized_resamples_equal_brute_force():
    # the bootstrap's count-weighted curve equals reducing the resampled images themselves
    correct, conf = random_case(2, 60, 1)
    rng = metric_stream(5, "selective", {"scorer": "msp"})
    rows = next(bootstrap_resamples(60, rng, 4))
    from benchmark.reductions.selective import selective_stats, tie_groups

    order, starts = tie_groups(conf)
    weights = np.stack([np.bincount(r, minlength=60) for r in rows])
    stats = selective_stats(weights, ~correct, order, starts, COVERAGES, RISKS)
    for b, r in enumerate(rows):
        want = brute_force(correct[r], conf[r])
        for (metric, cond), value in want.items():
            key = metric if cond is None else f"{metric}@{cond!r}"
            assert stats[key][b] == pytest.approx(value, abs=1e-9), (b, key)


# --- task -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    train = read_digits(split="train")
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    x, y = train.images.float(), torch.from_numpy(train.labels)
    for _ in range(30):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    data = read_digits(split="test")
    return net.eval(), data.subset(stratified_subset(data.labels, 200, 0))


def context(model, data: EvalData) -> TaskContext:
    return TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                       batch_size=64, progress=False, meta={}, data_id="test")


def test_task_end_to_end(model_and_data):
    model, data = model_and_data
    task = get_task("selective")
    params = resolve_params(task, {"scorers": ["msp", "energy"], "bootstrap": 100},
                            "test suite")
    assert params["coverages"] == [80, 90, 95] and params["risks"] == [1, 5]
    ctx = context(model, data)
    records, metrics = task.run(ctx, params)
    logits = ctx.clean_logits()
    correct = (logits.argmax(1) == ctx.labels()).numpy()
    assert 0.5 < correct.mean() < 1.0
    for scorer, fn in (("msp", msp), ("energy", energy)):
        table = records.one(scorer=scorer)
        np.testing.assert_array_equal(table["index"], np.arange(len(data)))
        np.testing.assert_array_equal(table["correct"], correct)
        np.testing.assert_allclose(table["confidence"], fn(logits))
        rows = [m for m in metrics if m.conditions["scorer"] == scorer]
        got = values(rows)
        want = brute_force(correct, table["confidence"], [80, 90, 95], [1, 5])
        assert got == pytest.approx(want)
        assert len(rows) == 2 + 3 + 2
        assert all(m.ci_low <= m.value <= m.ci_high for m in rows)
    assert task.reduce(records, params, 0) == metrics  # records alone re-reduce


@pytest.mark.parametrize("given, problem", [
    ({"scorers": ["odin"]}, "not a function of the logits"),
    ({"scorers": ["msp", "odin"]}, "odin"),
    ({"scorers": ["mps"]}, "unknown scorer"),
    ({"coverages": [0]}, "coverages"),
    ({"coverages": [101]}, "coverages"),
    ({"risks": [-1]}, "risks"),
    ({"bootstrap": -1}, "bootstrap"),
])
def test_bad_params_refused_at_load(given, problem):
    with pytest.raises(SuiteError, match=problem):
        resolve_params(get_task("selective"), given, "suite x")


def test_a_share_at_zero_or_full_still_carries_its_noise():
    """Errors only among the least confident: the risk at 80 % coverage is 0 in every resample,
    the coverage at 5 % risk 100 % in most; their intervals are at least the Wilson ones."""
    correct = np.r_[np.ones(196, dtype=bool), np.zeros(4, dtype=bool)]
    confidence = np.linspace(1.0, 0.0, 200)
    rows = {(m.metric, m.conditions.get("coverage"), m.conditions.get("risk")): m for m in
            selective_metrics(correct, confidence, [80], [5], {"scorer": "msp"}, 0, 200)}
    risk = rows[("selective_risk", 80, None)]
    assert risk.value == 0.0 and risk.ci_low == 0.0 and risk.ci_high > 1.0  # Wilson of 0/160
    cover = rows[("coverage_at_risk", None, 5)]
    assert cover.value == 100.0 and cover.ci_low < 99.0 and cover.ci_high == 100.0
