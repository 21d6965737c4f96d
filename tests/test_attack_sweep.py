"""Attack compute only where it can change the answer: clean mistakes are never attacked, eps
sweeps are nested, PGD / I-FGSM stop early per point — while the full, independent runs still
give the committed adversarial examples and records bit for bit."""

from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn as nn
from test_attacks_tasks import MEAN, STD, context, table, train_net

import attacks.fixed
from attacks.common import attack_loss, check_adversarial, unit_noise
from attacks.gradient import fgsm, ifgsm, in_topk, pgd
from benchmark.checkpoints import NormalizedModel
from benchmark.data import stratified_subset
from benchmark.datasets import read_digits
from benchmark.errors import SuiteError
from benchmark.tasks import get_task, resolve_params
from benchmark.tasks.registry import classification_columns

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model():
    return NormalizedModel(train_net(0), MEAN, STD).eval()


@pytest.fixture(scope="module")
def digits():
    """150 test digits; any two differ by >= 0.3125 in Linf, so an attacked point within
    eps <= 0.15 of its image names it."""
    data = read_digits(split="test")
    return data.subset(stratified_subset(data.labels, 150, 0))


def tensors(data):
    return data.images.float(), torch.from_numpy(data.labels)


def measure(model, data, name, batch_size=64, **params):
    """(records, metrics) of task `name`, its parameters validated as at suite load."""
    task = get_task(name)
    return task.run(context(model, data, batch_size=batch_size),
                    resolve_params(task, params, "test suite"))


def same_tables(a, b) -> bool:
    """The two records hold the same tables, every column equal bit for bit (dtype too)."""
    if [t.conditions for t in a] != [t.conditions for t in b]:
        return False
    return all(list(ta.columns) == list(tb.columns)
               and all(ta[k].dtype == tb[k].dtype and np.array_equal(ta[k], tb[k])
                       for k in ta.columns) for ta, tb in zip(a, b, strict=True))


def reference_pgd(model, x, y, eps, *, norm, steps, step, random_start, restarts, seed, index,
                  loss="ce", bounds=(0.0, 1.0)):
    """PGD exactly as committed before early stop existed, kept here as the oracle."""
    def direction(grad):
        if norm == "linf":
            return grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        return grad * (1.0 / norms).view(-1, *([1] * (grad.dim() - 1)))

    def project(x_adv, x0):
        delta = x_adv - x0
        if norm == "linf":
            delta = delta.clamp_(-eps, eps)
        else:
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            factor = torch.clamp(eps / norms, max=1.0)
            delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
        return (x0 + delta).clamp_(*bounds)

    x0 = x.detach()
    best = best_wrong = best_loss = None
    for restart in range(restarts):
        if random_start:
            noise = unit_noise(x0.shape[1:], index, seed, restart, norm).to(x0.device, x0.dtype)
            x_adv = (x0 + eps * noise).clamp_(*bounds)
        else:
            x_adv = x0.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                value = attack_loss(model(x_adv), y, loss).sum()
                (grad,) = torch.autograd.grad(value, x_adv)
            with torch.no_grad():
                x_adv = project(x_adv.detach() + step * direction(grad), x0)
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            logits = model(x_adv)
            wrong, value = logits.argmax(dim=1) != y, attack_loss(logits, y, loss)
        if best is None:
            best, best_wrong, best_loss = x_adv, wrong, value
            continue
        better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (value > best_loss))
        best = torch.where(better.view(-1, *([1] * (x0.dim() - 1))), x_adv, best)
        best_wrong, best_loss = best_wrong | wrong, torch.where(better, value, best_loss)
    return best


class Counted(nn.Module):
    """`model` with every input batch it is given kept (detached copies)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def image_passes(model):
    """A forward hook counting the images `model` is run on: (counter, handle)."""
    count = [0]
    handle = model.register_forward_hook(lambda _m, _i, out: count.__setitem__(
        0, count[0] + len(out)))
    return count, handle


# ------------------------------------------------------------------ (a) full runs unchanged


@pytest.mark.parametrize(("norm", "eps", "restarts"), [("linf", 0.1, 1), ("l2", 0.8, 1),
                                                       ("linf", 0.1, 3), ("l2", 0.8, 2)])
def test_full_pgd_is_the_committed_pgd_bit_for_bit(model, digits, norm, eps, restarts):
    x, y = tensors(digits)
    index = torch.arange(len(y)) + 7
    ours = pgd(model, x, y, eps, norm=norm, steps=5, restarts=restarts, seed=3, index=index,
               early_stop=False)
    expected = reference_pgd(model, x, y, eps, norm=norm, steps=5, step=2.5 * eps / 5,
                             random_start=True, restarts=restarts, seed=3, index=index)
    assert torch.equal(ours, expected)
    assert torch.equal(pgd(model, x, y, eps, norm=norm, steps=5, restarts=restarts, seed=3,
                           index=index), expected)  # the library's default: the full run
    assert torch.equal(ifgsm(model, x, y, 0.1, steps=5, early_stop=False), reference_pgd(
        model, x, y, 0.1, norm="linf", steps=5, step=0.02, random_start=False, restarts=1,
        seed=0, index=index))


def committed_records(model, data, eps_list, steps, batch_size, step_factor=2.5):
    """{(attack, eps): columns} as the committed pgd task recorded them: FGSM and PGD on every
    point of each batch, clean mistakes counted as errors."""
    x_all, y_all = tensors(data)
    parts = {}
    for start in range(0, len(y_all), batch_size):
        x, y = x_all[start:start + batch_size], y_all[start:start + batch_size]
        index = torch.arange(start, start + len(y))
        with torch.no_grad():
            clean = classification_columns(model(x), y)
        for eps in eps_list:
            runs = {"fgsm": fgsm(model, x, y, eps),
                    "pgd": reference_pgd(model, x, y, eps, norm="linf", steps=steps,
                                         step=step_factor * eps / steps, random_start=True,
                                         restarts=1, seed=0, index=index)}
            for name, x_adv in runs.items():
                with torch.no_grad():
                    columns = classification_columns(model(x_adv), y)
                adv = columns.pop("correct")
                batch = {"correct": adv & clean["correct"],
                         "correct_top5": columns.pop("correct_top5") & clean["correct_top5"],
                         "adv_correct": adv, **columns}
                for key, values in batch.items():
                    parts.setdefault((name, eps), {}).setdefault(key, []).append(values)
    return {key: {k: np.concatenate(v) for k, v in columns.items()}
            for key, columns in parts.items()}


def test_independent_full_sweep_reproduces_the_committed_records(model, digits):
    x, y = tensors(digits)
    with torch.no_grad():
        hits = np.flatnonzero((model(x).argmax(1) == y).numpy())
    data = digits.subset(hits)  # no clean mistake: nothing is skipped, the batches are as before
    records, metrics = measure(model, data, "pgd", eps=[0.1, 0.05], steps=4,
                               sweep="independent", early_stop=False, top5=True)
    expected = committed_records(model, data, [0.1, 0.05], 4, 64)
    for (name, eps), columns in expected.items():
        got = records.one(eps=eps, space="pixel", norm="linf", attack=name)
        assert list(got.columns) == ["index", *columns]
        for key, values in columns.items():
            assert got[key].dtype == values.dtype and np.array_equal(got[key], values), key
    assert records.facts == {"sweep": "independent", "early_stop": False}
    assert {tuple(sorted(m.conditions)) for m in metrics} == {("eps", "norm", "space"),
                                                              ("norm", "space")}
    # with clean mistakes: the same per-sample verdicts; their adversarial columns are the
    # clean pass's now (they are not attacked)
    records, _ = measure(model, digits, "pgd", eps=[0.1], steps=4, sweep="independent",
                         early_stop=False, top5=True)
    expected = committed_records(model, digits, [0.1], 4, 64)
    clean_mistake = ~records.one(space="pixel", norm="linf")["correct"]
    assert clean_mistake.sum() >= 3
    for name in ("fgsm", "pgd"):
        got, want = records.one(eps=0.1, space="pixel", norm="linf", attack=name), \
            expected[(name, 0.1)]
        assert np.array_equal(got["correct"], want["correct"])
        keep = ~clean_mistake
        for key in ("adv_correct", "pred", "correct_top5"):
            assert np.array_equal(got[key][keep], want[key][keep]), key
        # evaluated in a smaller batch now: equal up to the kernels' float reordering
        assert np.allclose(got["confidence"][keep], want["confidence"][keep], rtol=1e-5)
        assert not got["adv_correct"][clean_mistake].any()


# ------------------------------------------------------------------ (b) one eps: nested = indep.


@pytest.mark.parametrize(("name", "params"), [
    ("fgsm", {}),
    ("ifgsm", {"steps": 4, "early_stop": False}),
    ("ifgsm", {"steps": 4}),
    ("pgd", {"steps": 4, "early_stop": False}),
    ("pgd", {"steps": 4, "norm": "l2", "eps": [0.8], "early_stop": False}),
    ("attack", {"attack": "pgd", "options": {"steps": 4}}),
])
def test_at_one_eps_nested_is_independent_exactly(model, digits, name, params):
    params = {"eps": [0.1], **params}
    nested, nested_metrics = measure(model, digits, name, sweep="nested", **params)
    independent, metrics = measure(model, digits, name, sweep="independent", **params)
    assert same_tables(nested, independent) and nested_metrics == metrics
    assert nested.facts["sweep"] == "nested" and independent.facts["sweep"] == "independent"
    assert nested.facts["early_stop"] == params.get("early_stop", name == "ifgsm")


# ------------------------------------------------------------------ (c) nested >= independent


@pytest.mark.parametrize(("name", "eps"), [("pgd", [0.1, 0.02, 0.15, 0.05]),
                                           ("ifgsm", [0.05, 0.15, 0.1])])
def test_nested_early_stopped_sweep_is_monotone_and_never_below_the_full_one(model, digits,
                                                                             name, eps):
    fast_records, fast = measure(model, digits, name, eps=eps, steps=5, top5=True)
    _, full = measure(model, digits, name, eps=eps, steps=5, sweep="independent",
                      early_stop=False, top5=True)
    assert fast_records.facts == {"sweep": "nested", "early_stop": True}
    fast, full = table(fast), table(full)
    for metric in ("top1_err", "top5_err", "fgsm_top1_err"):
        for e in eps:
            assert fast[(metric, e)] >= full[(metric, e)], (metric, e)
        ordered = [fast[(metric, e)] for e in sorted(eps)]
        assert ordered == sorted(ordered)
    assert fast[("flag_not_monotone", None)] == 0
    assert fast[("top1_err", max(eps))] > fast[("top1_err", min(eps))]  # a real sweep
    # a point out of the top-5 at a smaller eps repeats that eps's rows at every larger one;
    # one misclassified but still top-5 correct was attacked on and stays misclassified
    tables = [fast_records.one(eps=e, space="pixel", norm="linf", attack=name)
              for e in sorted(eps)]
    for smaller, larger in pairwise(tables):
        broken = ~smaller["correct_top5"]
        for key in ("correct", "adv_correct", "pred", "confidence", "correct_top5"):
            assert np.array_equal(smaller[key][broken], larger[key][broken]), key
        assert not (larger["correct"] & ~smaller["correct"]).any()
        assert not (larger["correct_top5"] & ~smaller["correct_top5"]).any()


# ------------------------------------------------------------------ (d) early-stopped pgd


@pytest.mark.parametrize(("norm", "eps", "restarts"), [("linf", 0.1, 1), ("l2", 0.4, 1),
                                                       ("linf", 0.1, 3)])
def test_early_stopped_pgd_keeps_misclassified_iterates_within_budget_and_saves_passes(
        model, digits, norm, eps, restarts):
    x, y = tensors(digits)
    count, handle = image_passes(model)
    try:
        full = pgd(model, x, y, eps, norm=norm, steps=10, restarts=restarts, seed=1)
        full_passes, count[0] = count[0], 0
        stopped = pgd(model, x, y, eps, norm=norm, steps=10, restarts=restarts, seed=1,
                      early_stop=True)
        stopped_passes = count[0]
    finally:
        handle.remove()
    assert full_passes == len(y) * (10 if restarts == 1 else restarts * 11)
    check_adversarial(x, stopped, norm=norm, bounds=(0.0, 1.0), eps=eps)
    with torch.no_grad():
        wrong_full = model(full).argmax(1) != y
        wrong = model(stopped).argmax(1) != y
    assert wrong.sum() >= 20 and (~wrong).sum() >= 20
    assert not (wrong_full & ~wrong).any()  # every point the full run breaks stays broken
    # points it stopped early hold a misclassified iterate; the others end where the full run
    # ends them (another batch composition may flip a float-noise gradient sign: rare)
    moved = (stopped != full).flatten(1).any(1)
    assert (moved & ~wrong).sum() <= 2
    assert stopped_passes < 0.8 * full_passes


@pytest.mark.parametrize("restarts", [1, 3])
def test_early_stop_on_top5_attacks_on_until_the_label_leaves_the_top5(model, digits,
                                                                       restarts):
    x, y = tensors(digits)
    eps = 0.15
    full = pgd(model, x, y, eps, steps=10, restarts=restarts, seed=1)
    top1 = pgd(model, x, y, eps, steps=10, restarts=restarts, seed=1, early_stop=True)
    top5 = pgd(model, x, y, eps, steps=10, restarts=restarts, seed=1, early_stop=True, topk=5)
    check_adversarial(x, top5, norm="linf", bounds=(0.0, 1.0), eps=eps)
    with torch.no_grad():
        out5 = {name: ~in_topk(model(adv), y, 5) for name, adv in
                (("full", full), ("top1", top1), ("top5", top5))}
        wrong5 = model(top5).argmax(1) != y
    assert not (out5["full"] & ~out5["top5"]).any()  # the full run's top-5 misses stay
    assert out5["top5"].sum() > out5["top1"].sum()  # stopping at top-1 loses top-5 misses
    assert wrong5.sum() >= (model(full).argmax(1) != y).sum() - 2


def test_early_stop_ends_a_clean_mistake_at_once_and_spends_no_restart_on_broken_points(
        model, digits):
    x, y = tensors(digits)
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    assert clean_wrong.any()
    stopped = ifgsm(model, x, y, 0.1, steps=5, early_stop=True)  # first iterate: x itself
    assert torch.equal(stopped[clean_wrong], x[clean_wrong])
    count, handle = image_passes(model)
    try:
        # at a budget that breaks every point in the first restart, more restarts cost nothing
        one = pgd(model, x, y, 0.3, steps=10, seed=1, early_stop=True)
        one_passes, count[0] = count[0], 0
        three = pgd(model, x, y, 0.3, steps=10, restarts=3, seed=1, early_stop=True)
        three_passes = count[0]
    finally:
        handle.remove()
    with torch.no_grad():
        assert (model(one).argmax(1) != y).all()
    assert torch.equal(one, three) and one_passes == three_passes < 10 * len(y)


# ------------------------------------------------------------------ (e) clean mistakes skipped


@pytest.mark.parametrize("fast", [True, False])
def test_clean_mistakes_never_reach_the_model_during_attacks(model, digits, monkeypatch, fast):
    x, y = tensors(digits)
    with torch.no_grad():
        wrong = (model(x).argmax(1) != y).numpy()
    assert wrong.sum() >= 3
    attacked = []  # (the points handed to an attack, their data positions if given)
    for name in ("pgd", "fgm"):  # what the registered attacks call
        original = getattr(attacks.fixed, name)

        def spy(*args, original=original, **kwargs):
            attacked.append((args[1].detach().clone(), kwargs.get("index")))
            return original(*args, **kwargs)

        monkeypatch.setattr(attacks.fixed, name, spy)
    counted = Counted(model)
    eps, steps = [0.05, 0.1], 3
    params = {} if fast else {"sweep": "independent", "early_stop": False}
    measure(counted, digits, "pgd", eps=eps, steps=steps, **params)
    calls = 2 * len(eps) * 3  # FGSM and PGD, per eps and batch (nested: fewer may be left)
    assert len(attacked) <= calls if fast else len(attacked) == calls
    for points, index in attacked:
        position = (points.flatten(1)[:, None] == x.flatten(1)[None]).all(-1).int().argmax(1)
        assert torch.equal(points, x[position]) and not wrong[position.numpy()].any()
        assert index is None or torch.equal(index, position)
    batches = [x[start:start + 64] for start in range(0, len(y), 64)]
    clean_passes = attack_rows = 0
    for seen in counted.seen:
        if any(seen.shape == b.shape and torch.equal(seen, b) for b in batches):
            clean_passes += 1  # the shared clean pass, the clean gradient, the randomized check
            continue
        distance = (seen.flatten(1)[:, None] - x.flatten(1)[None]).abs().amax(-1)
        nearest = distance.argmin(1)
        assert (distance.min(1).values <= max(eps) + 1e-6).all()
        assert not wrong[nearest.numpy()].any()
        attack_rows += len(seen)
    assert clean_passes == 3 + 3 + 2  # clean pass and clean gradient per batch, 2 on the first
    if not fast:  # per eps: FGSM's evaluation, 3 PGD steps, PGD's evaluation, on the hits only
        assert attack_rows == len(eps) * (1 + steps + 1) * int((~wrong).sum())


# ------------------------------------------------------------------ parameters and records


def test_sweep_and_early_stop_are_facts_not_conditions_and_transfer_has_neither(model, digits):
    records, metrics = measure(model, digits, "fgsm", eps=[0.1])
    assert records.facts == {"sweep": "nested", "early_stop": False}
    assert all(set(m.conditions) <= {"eps", "space", "norm"} for m in metrics)
    records, _ = measure(model, digits, "attack", attack="pgd", eps=[0.1],
                         options={"steps": 2, "early_stop": True}, sweep="independent")
    assert records.facts == {"sweep": "independent", "early_stop": True}
    records, _ = measure(model, digits, "attack", attack="ifgsm", eps=[0.1],
                         options={"steps": 2})
    assert records.facts == {"sweep": "nested", "early_stop": False}
    assert {get_task(t).version for t in ("fgsm", "ifgsm", "pgd")} == {4}
    assert get_task("attack").version == 2 and get_task("transfer").version == 3
    assert get_task("pgd").defaults["sweep"] == "nested"
    assert get_task("pgd").defaults["early_stop"] is True
    transfer = get_task("transfer")
    assert "sweep" not in transfer.defaults and "early_stop" not in transfer.defaults
    for params, message in (({"sweep": "nested"}, "sweep"),
                            ({"attack": "pgd", "attack_params": {"early_stop": True}},
                             "pgd has no parameter"),
                            ({"attack": "pgd", "attack_params": {"sweep": "nested"}},
                             "pgd has no parameter")):
        with pytest.raises(SuiteError, match=message):
            resolve_params(transfer, params, "test suite")
    with pytest.raises(SuiteError, match="'sweep' must be one of 'nested', 'independent'"):
        resolve_params(get_task("pgd"), {"sweep": "both"}, "test suite")
    with pytest.raises(SuiteError, match="'early_stop' must be true or false"):
        resolve_params(get_task("ifgsm"), {"early_stop": "yes"}, "test suite")


def test_top5_is_asked_for_and_stopping_at_top1_costs_far_less(model, digits):
    """Without `top5` the tasks report no top-5 error (their records hold no top-5 column), so
    stopping at the first top-1 miss cannot understate one; with it, they stop at top-5 misses."""
    eps = [0.05, 0.1, 0.15]
    count, handle = image_passes(model)
    try:
        top1_records, top1 = measure(model, digits, "pgd", eps=eps, steps=5)
        top1_passes, count[0] = count[0], 0
        _, top5 = measure(model, digits, "pgd", eps=eps, steps=5, top5=True)
        top5_passes = count[0]
    finally:
        handle.remove()
    assert not any(m.metric == "top5_err" for m in top1)
    assert all("correct_top5" not in t.columns for t in top1_records)
    assert {m.conditions["eps"] for m in top5 if m.metric == "top5_err"} == set(eps)
    assert top1_passes < 0.9 * top5_passes


def test_top5_errors_are_never_below_attacking_every_point(model, digits):
    """With `top5`, a clean top-1 mistake still in the top-5 is attacked too: the task's
    top-5 error (nested, early stop) is >= that of PGD run on every point at every eps."""
    x, y = tensors(digits)
    eps = [0.05, 0.1, 0.15]
    _, metrics = measure(model, digits, "pgd", eps=eps, steps=5, top5=True)
    with torch.no_grad():
        clean_in = in_topk(model(x), y, 5)
        assert (clean_in & (model(x).argmax(1) != y)).any()  # such points exist here
    for e in eps:
        with torch.no_grad():
            adv_in = in_topk(model(pgd(model, x, y, e, steps=5, seed=0)), y, 5)
        full = 100 * (~(clean_in & adv_in)).double().mean().item()
        assert table(metrics)[("top5_err", e)] >= full - 1e-9, e
