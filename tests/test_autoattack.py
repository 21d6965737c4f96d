"""The `autoattack` task: image-for-image parity with pyautoattack called directly, the nested
sweep, resuming after a kill, AutoAttack's checks as flags, parameters, and the worst case."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn as nn
from pyautoattack import AutoAttack
from test_attacks_tasks import MEAN, STD, context, train_net

import attacks.autoattack as engine
from benchmark.checkpoints import NormalizedModel
from benchmark.data import stratified_subset
from benchmark.datasets import read_digits
from benchmark.derived import worst_case
from benchmark.errors import SuiteError
from benchmark.records import Records
from benchmark.reductions.autoattack import square_flag, stage_accuracy
from benchmark.store import StoredUnit
from benchmark.tasks import get_task, resolve_params

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
BASE = {"space": "pixel", "norm": "linf", "ensemble": "standard"}


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return NormalizedModel(train_net(0), MEAN, STD).eval()


@pytest.fixture(scope="module")
def digits():
    data = read_digits(split="test")
    return data.subset(stratified_subset(data.labels, 80, 0))


@pytest.fixture(scope="module")
def few(digits):
    """40 of the images, for the tests that run several sweeps."""
    return digits.subset(np.arange(40))


def run(ctx, **params) -> tuple[Records, dict]:
    task = get_task("autoattack")
    records, metrics = task.run(ctx, resolve_params(task, params, "test suite"))
    return records, {(m.metric, m.conditions.get("eps"), m.conditions.get("attack")): m.value
                     for m in metrics}


def direct(net, data, eps, norm="Linf", **options):
    """pyautoattack's own evaluation of the same points: (adversarial labels, robust mask)."""
    x = torch.cat([images for images, _ in data.batches(32, torch.device("cpu"))])
    y = torch.from_numpy(data.labels)
    aa = AutoAttack(net, norm=norm, eps=eps, seed=0, **options)
    aa.verbose = False
    _, y_adv = aa.run_standard_evaluation(x, y, batch_size=32)
    return y_adv.numpy(), (y_adv == y).numpy()


def test_standard_version_equals_pyautoattack_image_for_image(net, digits):
    records, metrics = run(context(net, digits, batch_size=32), eps=[0.1], sweep="independent")
    y_adv, robust = direct(net, digits, 0.1)
    table = records.one(eps=0.1, **BASE)
    np.testing.assert_array_equal(table["correct"], robust)
    broken = ~robust
    np.testing.assert_array_equal(table["pred"][broken], y_adv[broken])
    assert 0 < broken.sum() < len(robust)  # the comparison has both outcomes
    assert metrics[("top1_err", 0.1, None)] == pytest.approx(100 * broken.mean())
    # the stages are pyautoattack's standard list; errors after each stage are cumulative
    assert records.facts["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    after = [metrics[("attack_err", 0.1, a)] for a in records.facts["attacks"]]
    assert after == sorted(after) and after[-1] == metrics[("top1_err", 0.1, None)]
    # broken_by: 0 for clean mistakes, the stage that broke it, -1 for robust points
    clean_wrong = ~records.tables[0]["correct"]
    assert (table["broken_by"][clean_wrong] == 0).all()
    assert (table["broken_by"][robust] == -1).all()
    assert metrics[("clean_err", None, None)] == pytest.approx(100 * clean_wrong.mean())


def test_custom_l2_equals_pyautoattack(net, digits):
    records, _ = run(context(net, digits, batch_size=32), version="custom",
                     attacks=["apgd-ce", "apgd-dlr"], norm="l2", eps=[0.5])
    y_adv, robust = direct(net, digits, 0.5, norm="L2", version="custom",
                           attacks=["apgd-ce", "apgd-dlr"])
    table = records.one(eps=0.5, space="pixel", norm="l2", ensemble="apgd-ce+apgd-dlr")
    np.testing.assert_array_equal(table["correct"], robust)
    np.testing.assert_array_equal(table["pred"][~robust], y_adv[~robust])


def test_l1_standard_equals_pyautoattack(net, few):
    """L1, within the L1 budget check (relative float32 slack): the same points broken."""
    records, _ = run(context(net, few, batch_size=32), norm="l1", eps=[0.75], version="custom",
                     attacks=["apgd-ce", "apgd-t"])
    y_adv, robust = direct(net, few, 0.75, norm="L1", version="custom",
                           attacks=["apgd-ce", "apgd-t"])
    table = records.one(eps=0.75, space="pixel", norm="l1", ensemble="apgd-ce+apgd-t")
    np.testing.assert_array_equal(table["correct"], robust)
    np.testing.assert_array_equal(table["pred"][~robust], y_adv[~robust])
    assert 0 < (~robust).sum() < len(robust)


def test_progress_of_another_batch_size_is_not_resumed(net, few, monkeypatch, tmp_path):
    options = {"version": "custom", "attacks": ["apgd-ce", "apgd-dlr"], "eps": [0.1]}
    run(context(net, few, batch_size=32, scratch=tmp_path / "unit"), **options)
    calls: list[str] = []
    original = engine.Ensemble.stage
    monkeypatch.setattr(engine.Ensemble, "stage", lambda self, attack, *args: (
        calls.append(attack), original(self, attack, *args))[1])
    run(context(net, few, batch_size=32, scratch=tmp_path / "unit"), **options)
    assert calls == []  # every stage was kept
    run(context(net, few, batch_size=16, scratch=tmp_path / "unit"), **options)
    assert calls == ["apgd-ce", "apgd-dlr"]  # other batches, other random starts: afresh


def test_nested_sweep_is_monotone_and_starts_as_the_independent_one(net, few):
    """Nested >= independent holds image by image only for attacks whose randomness is per
    image (rubench's PGD); pyautoattack seeds per batch, so at a larger eps the nested run's
    smaller batches draw other starts. What holds: the smallest eps is the same run, the curve
    is monotone, and every point broken at a smaller eps stays broken."""
    digits = few
    eps = [0.15, 0.05, 0.1]
    options = {"version": "custom", "attacks": ["apgd-ce", "apgd-dlr"]}
    nested, nested_m = run(context(net, digits, batch_size=32), eps=eps, **options)
    at = {**BASE, "ensemble": "apgd-ce+apgd-dlr"}
    independent, independent_m = run(context(net, digits, batch_size=32), eps=eps,
                                     sweep="independent", **options)
    errors = [nested_m[("top1_err", e, None)] for e in sorted(eps)]
    assert errors == sorted(errors)
    smallest = min(eps)
    for a, b in zip(nested.one(eps=smallest, **at).columns.values(),
                    independent.one(eps=smallest, **at).columns.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert nested_m[("top1_err", max(eps), None)] >= independent_m[("top1_err", smallest, None)]
    broken = [~nested.one(eps=e, **at)["correct"] for e in sorted(eps)]
    assert all((small <= large).all() for small, large in pairwise(broken))
    assert nested.facts["sweep"] == "nested" and independent.facts["sweep"] == "independent"
    # with one budget the two sweeps are the same run
    one_nested, _ = run(context(net, digits, batch_size=32), eps=[0.1], **options)
    one_independent, _ = run(context(net, digits, batch_size=32), eps=[0.1],
                             sweep="independent", **options)
    for a, b in zip(one_nested, one_independent, strict=True):
        for name in a.columns:
            np.testing.assert_array_equal(a[name], b[name])


def test_clean_mistakes_are_never_attacked(net, digits, monkeypatch):
    attacked = []
    original = engine.Ensemble.stage

    def spy(self, attack, x, y, batch_size, what):
        attacked.append(len(x))
        return original(self, attack, x, y, batch_size, what)

    monkeypatch.setattr(engine.Ensemble, "stage", spy)
    records, _ = run(context(net, digits, batch_size=32), version="custom",
                     attacks=["apgd-ce"], eps=[0.02])
    assert attacked == [int(records.tables[0]["correct"].sum())]


def test_a_killed_run_resumes_after_its_last_finished_stage(net, few, monkeypatch, tmp_path):
    digits = few
    options = {"version": "custom", "attacks": ["apgd-ce", "apgd-dlr", "apgd-t"],
               "eps": [0.05, 0.1]}
    whole, _ = run(context(net, digits, batch_size=32), **options)
    calls: list[tuple[float, str]] = []
    original = engine.Ensemble.stage

    def killed_at_fifth(self, attack, x, y, batch_size, what):
        calls.append((self.eps, attack))
        if len(calls) == 5:
            raise KeyboardInterrupt  # as a kill in the second budget's second stage
        return original(self, attack, x, y, batch_size, what)

    monkeypatch.setattr(engine.Ensemble, "stage", killed_at_fifth)
    with pytest.raises(KeyboardInterrupt):
        run(context(net, digits, batch_size=32, scratch=tmp_path / "unit"), **options)
    calls.clear()
    monkeypatch.setattr(engine.Ensemble, "stage", lambda self, *a: (
        calls.append((self.eps, a[0])), original(self, *a))[1])
    resumed, _ = run(context(net, digits, batch_size=32, scratch=tmp_path / "unit"), **options)
    assert calls == [(0.1, "apgd-dlr"), (0.1, "apgd-t")]  # four finished stages were kept
    for a, b in zip(whole, resumed, strict=True):
        assert a.conditions == b.conditions
        for name in a.columns:
            np.testing.assert_array_equal(a[name], b[name])


def test_too_few_classes_for_the_targeted_attacks_is_a_clear_failure(digits):
    five = NormalizedModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), MEAN, STD).eval()
    with pytest.raises(SuiteError, match="9 target classes, the model has 5"):
        run(context(five, digits), eps=[0.1])


@pytest.mark.parametrize(("params", "message"), [
    ({"version": "custom"}, "needs `attacks`"),
    ({"attacks": ["apgd-ce"]}, "for version 'custom' only"),
    ({"version": "custom", "attacks": ["pgd"]}, "attacks"),
    ({"eps": [0.0]}, "eps"),
    ({"norm": "l3"}, "norm"),
    ({"sweep": "both"}, "sweep"),
])
def test_parameters_are_checked_at_suite_load(params, message):
    with pytest.raises(SuiteError, match=message):
        resolve_params(get_task("autoattack"), params, "suite x")


class _Dynamic(nn.Module):
    """A forward pass that takes an input gradient (a test-time-adapting defense)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.linear(x.flatten(1)).sum(), x)
        return self.linear((x + 0.01 * grad.sign()).flatten(1).detach())


def test_dynamic_check_flags_a_forward_that_computes_gradients_and_resets():
    x = torch.rand(4, 1, 8, 8)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert not engine.is_dynamic(plain, x)
    assert engine.is_dynamic(_Dynamic(), x)
    assert not engine.is_dynamic(plain, x)  # pyautoattack's counters alone would stay raised


def test_square_check_as_autoattack_computes_it():
    attacks = ["apgd-ce", "apgd-t", "fab-t", "square"]
    # 1000 points: 100 clean mistakes, 300 broken by apgd-ce, 2 or 3 by square
    broken_by = np.full(1000, -1, np.int8)
    broken_by[:100], broken_by[100:400] = 0, 1
    broken_by[400:402] = 4
    assert stage_accuracy(broken_by, attacks) == {"clean": 0.9, "apgd-ce": 0.6, "apgd-t": 0.6,
                                                  "fab-t": 0.6, "square": 0.598}
    assert not square_flag(stage_accuracy(broken_by, attacks))  # 0.2 points: within tolerance
    broken_by[402] = 4
    assert square_flag(stage_accuracy(broken_by, attacks))


def test_the_suite_worst_case_includes_autoattack():
    index = np.arange(6)
    pgd, aa = Records(), Records()
    pgd.add({"eps": 0.1, "space": "pixel", "norm": "linf", "attack": "pgd"}, index=index,
            correct=index != 0)
    aa.add({"eps": 0.1, **BASE}, index=index, correct=~np.isin(index, [1, 2]),
           broken_by=np.array([-1, 1, 2, -1, -1, -1], np.int8))
    rows = worst_case([(("m", "sha", "pgd", "c1"), StoredUnit("pgd", {}, 0), pgd),
                       (("m", "sha", "autoattack", "c2"), StoredUnit("autoattack", {}, 0), aa)])
    (row,) = rows
    assert row.metric.value == pytest.approx(50.0)  # images 0, 1, 2
    assert row.metric.conditions["attacks"] == "autoattack, pgd"


def test_the_runner_resumes_a_killed_unit_and_clears_its_progress_once_stored(tmp_path,
                                                                               monkeypatch):
    from test_runner import evaluate, make_zoo

    zoo, out = tmp_path / "zoo", tmp_path / "out"
    make_zoo(zoo, seeds=(0,))
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "t"\nversion = "1"\n[dataset]\nname = "digits"\n'
                     "[model_defaults]\nnum_classes = 10\n[run]\nlimit = 60\n"
                     '[tasks.autoattack]\nversion = "custom"\nattacks = ["apgd-ce", "apgd-dlr"]\n'
                     "eps = [0.0001]\n")
    calls: list[str] = []
    original = engine.Ensemble.stage

    def killed_at_second(self, attack, *args):
        calls.append(attack)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, attack, *args)

    monkeypatch.setattr(engine.Ensemble, "stage", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        evaluate(zoo, out, "--suite", str(suite))
    (kept,) = (out / "partial").iterdir()  # one unit's progress, keyed by checkpoint and config
    assert list(kept.iterdir())
    calls.clear()
    monkeypatch.setattr(engine.Ensemble, "stage", lambda self, attack, *args: (
        calls.append(attack), original(self, attack, *args))[1])
    assert evaluate(zoo, out, "--suite", str(suite)) == 0
    assert calls == ["apgd-dlr"]
    assert not kept.exists()
    import pandas as pd

    rows = pd.read_csv(out / "results.csv")
    robust = rows[(rows.task == "autoattack") & (rows.metric == "top1_err")]
    assert set(robust.ensemble) == {"apgd-ce+apgd-dlr"} and len(robust) == 1


def test_robustbench_cifar10_suite_and_its_model_card(tmp_path):
    """The robustbench-cifar10-linf suite end to end on a CIFAR-10 fixture, then `rubench
    export --robustbench`: RobustBench's layout and fields, numbers from the stored rows."""
    import json

    import pandas as pd
    from fixtures import write_cifar10

    from benchmark.archs import build_arch
    from benchmark.cli import main

    write_cifar10(tmp_path / "data", n_test=20)
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    zoo.mkdir()
    (zoo / "rubench.toml").write_text('arch = "tinynets:tiny_cnn32"\nmean = [0.0, 0.0, 0.0]\n'
                                      "std = [1.0, 1.0, 1.0]\n")
    torch.manual_seed(0)
    torch.save(build_arch("tinynets:tiny_cnn32", 10).state_dict(), zoo / "net.pth")
    assert main(["evaluate", str(zoo), "--suite", "robustbench-cifar10-linf", "--out", str(out),
                 "--data-root", str(tmp_path / "data"), "--no-progress"]) == 0
    rows = pd.read_csv(out / "results.csv")
    aa = rows[rows.task == "autoattack"].set_index("metric")
    assert aa.loc["top1_err", "eps"] == pytest.approx(8 / 255)
    assert aa.loc["top1_err", "ensemble"] == "standard" and aa.loc["top1_err", "n"] == 20
    assert main(["export", str(out), "--robustbench", "-o", str(tmp_path / "cards")]) == 0
    card = json.loads((tmp_path / "cards" / "cifar10" / "Linf" / "net.json").read_text())
    assert card["autoattack_acc"] == str(round(100 - aa.loc["top1_err", "value"], 2))
    assert card["clean_acc"] == str(round(100 - aa.loc["clean_err", "value"], 2))
    assert card["eps"] == pytest.approx(8 / 255) and card["dataset"] == "cifar10"
    assert card["additional_data"] is None and card["name"] == "net"
    assert list(card) == ["link", "name", "authors", "additional_data", "number_forward_passes",
                          "dataset", "venue", "architecture", "eps", "clean_acc", "reported",
                          "corruptions_acc", "corruptions_acc_3d", "corruptions_mce",
                          "corruptions_mce_3d", "autoattack_acc", "footnote"]


def test_robustbench_cards_refuse_a_custom_ensemble(tmp_path, capsys):
    from test_runner import evaluate, make_zoo

    from benchmark.cli import main

    make_zoo(tmp_path / "zoo", seeds=(0,))
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "t"\nversion = "1"\n[dataset]\nname = "digits"\n'
                     "[model_defaults]\nnum_classes = 10\n[run]\nlimit = 20\n"
                     '[tasks.autoattack]\nversion = "custom"\nattacks = ["apgd-ce"]\n')
    assert evaluate(tmp_path / "zoo", tmp_path / "out", "--suite", str(suite)) == 0
    assert main(["export", str(tmp_path / "out"), "--robustbench", "-o",
                 str(tmp_path / "cards")]) == 2
    assert "version = 'standard'" in capsys.readouterr().err
    import pandas as pd

    from reports.leaderboard import leaderboard

    table = leaderboard(pd.read_csv(tmp_path / "out" / "results.csv"))
    (header,) = [c for c in table.values.columns if str(c).startswith("AutoAttack err")]
    assert "not the standard version: apgd-ce" in header  # never shown as RobustBench's number
