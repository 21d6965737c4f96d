"""The attack tasks in the harness: numbers vs the library, flags on crafted models, budget
enforcement, transfer caching, determinism and batch-size independence, end to end via the CLI."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from tinynets import tiny_cnn

import attacks.fixed
import benchmark.tasks.attacks as attack_tasks
from attacks.common import BudgetError
from attacks.gradient import fgsm
from attacks.minimal import deepfool
from benchmark.checkpoints import NormalizedModel
from benchmark.cli import main
from benchmark.data import EvalData, stratified_subset
from benchmark.datasets import read_digits
from benchmark.errors import SuiteError
from benchmark.records import Records, concat
from benchmark.reductions.attacks import _median_norm
from benchmark.stats import wilson_interval
from benchmark.tasks import TaskContext, get_task, resolve_params

MEAN, STD = [0.3], [0.4]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def train_net(seed: int) -> nn.Module:
    """tinynets.tiny_cnn on normalized digits ((x - 0.3) / 0.4), full-batch Adam, 100 steps."""
    torch.manual_seed(seed)
    net = tiny_cnn()
    train = read_digits(split="train")
    x, y = (train.images.float() - MEAN[0]) / STD[0], torch.from_numpy(train.labels)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def nets():
    return [train_net(0), train_net(1)]


@pytest.fixture(scope="module")
def digits():
    data = read_digits(split="test")
    return data.subset(stratified_subset(data.labels, 150, 0))


def context(model, data, batch_size=64, **extra) -> TaskContext:
    meta = {"arch": "tinynets:tiny_cnn", "num_classes": data.num_classes, "mean": MEAN,
            "std": STD}
    return TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                       batch_size=batch_size, progress=False, meta=meta, data_id="test",
                       **extra)


def run(ctx, name, **params):
    """The task as the runner calls it: parameters validated (as at suite load), then run."""
    task = get_task(name)
    return task.run(ctx, resolve_params(task, params, "test suite"))[1]


def table(metrics) -> dict:
    """{(metric, eps or None): value}."""
    return {(m.metric, m.conditions.get("eps")): m.value for m in metrics}


def intervals(metrics) -> dict:
    """{(metric, eps or None): (ci_low, ci_high)}."""
    return {(m.metric, m.conditions.get("eps")): (m.ci_low, m.ci_high) for m in metrics}


def wilson(wrong: torch.Tensor) -> tuple[float, float]:
    """The Wilson interval (percent) of the count of True in `wrong`."""
    low, high = wilson_interval(int(wrong.sum()), len(wrong))
    return 100 * low, 100 * high


def test_fgsm_task_equals_library_fgsm_with_clean_mistakes_counted(nets, digits):
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    metrics = run(context(model, digits), "fgsm", eps=[0.05, 0.1], top5=True)
    values, cis = table(metrics), intervals(metrics)
    x, y = digits.images.float(), torch.from_numpy(digits.labels)
    with torch.no_grad():
        clean = model(x)
        for eps in (0.05, 0.1):
            adv = model(fgsm(model, x, y, eps))
            top1 = (clean.argmax(1) != y) | (adv.argmax(1) != y)
            top5 = ~((clean.topk(5, 1).indices == y[:, None]).any(1)
                     & (adv.topk(5, 1).indices == y[:, None]).any(1))
            assert values[("top1_err", eps)] == pytest.approx(100 * top1.double().mean().item())
            assert values[("top5_err", eps)] == pytest.approx(100 * top5.double().mean().item())
            assert cis[("top1_err", eps)] == pytest.approx(wilson(top1))
            assert cis[("top5_err", eps)] == pytest.approx(wilson(top5))
            assert cis[("top1_err", eps)][0] < values[("top1_err", eps)] \
                < cis[("top1_err", eps)][1]
    assert values[("top1_err", 0.1)] > values[("top1_err", 0.05)] > 100 * (
        clean.argmax(1) != y).double().mean().item()
    flags = {k: v for k, v in values.items() if k[0].startswith("flag")}
    assert set(flags) == {("flag_below_clean", 0.05), ("flag_below_clean", 0.1),
                          ("flag_not_monotone", None), ("flag_zero_grad", None),
                          ("flag_randomized", None), ("flag_softmax_output", None)}
    assert not any(flags.values())


def test_pgd_task_conditions_fgsm_comparison_and_batch_size_independence(nets, digits):
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    big = run(context(model, digits, batch_size=150), "pgd", eps=[0.05, 0.1], steps=5)
    small = run(context(model, digits, batch_size=32), "pgd", eps=[0.05, 0.1], steps=5)
    assert table(big) == table(small) and intervals(big) == intervals(small)
    values, cis = table(big), intervals(big)
    x, y = digits.images.float(), torch.from_numpy(digits.labels)
    for eps in (0.05, 0.1):
        assert values[("top1_err", eps)] >= values[("fgsm_top1_err", eps)]
        assert values[("flag_below_fgsm", eps)] == 0
        with torch.no_grad():  # the one-step reference, clean mistakes counted
            wrong = (model(x).argmax(1) != y) | (model(fgsm(model, x, y, eps)).argmax(1) != y)
        assert values[("fgsm_top1_err", eps)] == pytest.approx(100 * wrong.double().mean().item())
        assert cis[("fgsm_top1_err", eps)] == pytest.approx(wilson(wrong))
        assert cis[("flag_below_fgsm", eps)] == (None, None)  # 0/1 flags carry no interval
    first = big[0]
    assert first.metric == "top1_err" and first.n == 150
    assert first.conditions == {"eps": 0.05, "space": "pixel", "norm": "linf"}


def test_too_small_a_step_is_flagged_as_pgd_below_fgsm(nets, digits):
    # foolbox's pitfall in miniature: steps that cannot reach the boundary.
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    values = table(run(context(model, digits), "pgd", eps=[0.1], steps=5, step_factor=0.1))
    assert values[("top1_err", 0.1)] < values[("fgsm_top1_err", 0.1)]
    assert values[("flag_below_fgsm", 0.1)] == 1


def test_normalized_space_and_bce_loss_run_within_their_budget(nets, digits):
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    metrics = run(context(model, digits), "pgd", eps=[0.25], steps=5, space="normalized",
                  loss="bce")
    assert metrics[0].conditions == {"eps": 0.25, "space": "normalized", "norm": "linf"}
    # 0.25 in normalized units is 0.1 in pixels here (std 0.4): about the pixel-space error.
    pixel = table(run(context(model, digits), "pgd", eps=[0.1], steps=5, loss="bce"))
    assert table(metrics)[("top1_err", 0.25)] == pytest.approx(pixel[("top1_err", 0.1)], abs=5)


def test_limit_attacks_a_stratified_subset(nets, digits):
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    metrics = run(context(model, digits), "fgsm", eps=[0.1], limit=50)
    assert {m.n for m in metrics} == {50}


def test_minimal_task_numbers_equal_the_library_distances(nets, digits):
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    metrics = run(context(model, digits), "deepfool", eps=[0.3, 0.6], steps=20)
    values, cis = table(metrics), intervals(metrics)
    x, y = digits.images.float(), torch.from_numpy(digits.labels)
    distances = deepfool(model, x, y, steps=20).norms
    assert values[("median_norm", None)] == pytest.approx(distances.median().item(), rel=1e-6)
    for eps in (0.3, 0.6):
        assert values[("top1_err", eps)] == pytest.approx(
            100 * (distances <= eps).double().mean().item())
        assert cis[("top1_err", eps)] == pytest.approx(wilson(distances <= eps))
    assert values[("fail_rate", None)] == pytest.approx(
        100 * torch.isinf(distances).double().mean().item())
    assert cis[("fail_rate", None)] == pytest.approx(wilson(torch.isinf(distances)))
    # the median's order-statistic interval: k from the binomial tail summed by hand
    n, ordered = len(distances), distances.sort().values
    k = max(j for j in range(n) if sum(math.comb(n, i) for i in range(j)) / 2**n < 0.025)
    low, high = cis[("median_norm", None)]
    assert (low, high) == pytest.approx((ordered[k - 1].item(), ordered[n - k].item()),
                                        rel=1e-6)
    assert low < values[("median_norm", None)] < high


def test_median_interval_covers_and_is_left_out_when_unbounded():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):  # 10 % exact zeros, else Exp(1): median ln(9/5) (0.1 + 0.9 (1 - 5/9))
        sample = np.where(rng.uniform(size=50) < 0.1, 0.0, rng.exponential(size=50))
        m = _median_norm(sample, {})
        covered += m.ci_low <= math.log(9 / 5) <= m.ci_high
    assert covered / 400 >= 0.93  # >= 95 % by construction, up to Monte Carlo noise
    assert _median_norm(np.ones(5), {}).ci_low is None  # n < 6: no k >= 1
    assert _median_norm(np.ones(6), {}).ci_low == 1.0
    broken = np.r_[np.ones(10), np.full(10, np.inf)]  # the upper bound would be +inf
    m = _median_norm(broken, {})
    assert m.value == 1.0 and m.ci_low is None and m.ci_high is None


class Periodic(nn.Module):
    """Two classes, logits (0, sin(2 pi * sum of pixels)): FGSM can overshoot into the right class.

    Golden cases, for a 2x2 image of 0.45 (pixel sum s = 1.8, sin(3.6 pi) < 0: class 0) and the
    sign of the gradient of sin at 1.8 (cos(3.6 pi) > 0), so FGSM moves s by +-4 eps:
    - label 0: the loss grows with s: eps 0.1 -> s = 2.2, sin(4.4 pi) > 0, wrong; eps 0.2 ->
      s = 2.6, sin(5.2 pi) < 0, right again: error 100 % then 0 % (not monotone);
    - label 1 (already wrong): s moves down: eps 0.1 -> s = 1.4, sin(2.8 pi) > 0, right: the
      attacked inputs are classified better than the clean ones.
    """

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([torch.zeros_like(s), torch.sin(2 * math.pi * s)], dim=1)


def periodic_data(label: int) -> EvalData:
    return EvalData(name="periodic", labels=np.array([label]), num_classes=2, source="test",
                    images=torch.full((1, 1, 2, 2), 0.45))


def test_not_monotone_and_below_clean_flags_fire_on_golden_cases():
    values = table(run(context(Periodic(), periodic_data(0)), "fgsm", eps=[0.1, 0.2],
                       sweep="independent"))
    assert (values[("top1_err", 0.1)], values[("top1_err", 0.2)]) == (100.0, 0.0)
    assert values[("flag_not_monotone", None)] == 1
    # nested: broken at 0.1, so broken at 0.2 (its 0.1 example lies in the 0.2 ball)
    values = table(run(context(Periodic(), periodic_data(0)), "fgsm", eps=[0.2, 0.1]))
    assert (values[("top1_err", 0.1)], values[("top1_err", 0.2)]) == (100.0, 100.0)
    assert values[("flag_not_monotone", None)] == 0
    # a clean mistake is never attacked (FGSM would have moved it into the right class):
    # its rows hold the clean pass's prediction, so the flag cannot fire on white-box tasks
    task = get_task("fgsm")
    params = resolve_params(task, {"eps": [0.1]}, "test suite")
    records, metrics = task.run(context(Periodic(), periodic_data(1)), params)
    assert table(metrics)[("top1_err", 0.1)] == 100.0  # counted as an error: wrong when clean
    assert table(metrics)[("flag_below_clean", 0.1)] == 0
    adv = records.one(eps=0.1, space="pixel", norm="linf")
    assert (adv["pred"][0], adv["adv_correct"][0], adv["correct"][0]) == (0, False, False)
    adv.columns["adv_correct"][0] = True  # what attacking it would have recorded
    assert table(task.reduce(records, params, 0))[("flag_below_clean", 0.1)] == 1


def test_model_flags_fire_on_crafted_models(nets, digits):
    net = nets[0]
    randomized = NormalizedModel(nn.Sequential(net, nn.Dropout(0.5)), MEAN, STD).train()
    softmaxed = NormalizedModel(nn.Sequential(net, nn.Softmax(dim=1)), MEAN, STD).eval()

    class Quantized(nn.Module):
        """Rounds inputs to 1/16 grey levels first: zero input gradients (gradient masking)."""

        def forward(self, x):
            return net((torch.round(x * 16) / 16 - MEAN[0]) / STD[0])

    normal = NormalizedModel(net, MEAN, STD).eval()
    for model, flag in ((randomized, "flag_randomized"), (softmaxed, "flag_softmax_output"),
                        (Quantized(), "flag_zero_grad"), (normal, None)):
        values = table(run(context(model, digits), "fgsm", eps=[0.05]))
        fired = {k[0] for k, v in values.items() if k[0].startswith("flag") and v == 1}
        fired.discard("flag_below_clean")  # a dropout model may beat its own noisy clean pass
        assert fired == ({flag} if flag else set()), flag
    metrics = run(context(Quantized(), digits), "deepfool", eps=[0.5], steps=3)
    values = table(metrics)
    assert values[("flag_zero_grad", None)] == 1
    assert values[("zero_grad_rate", None)] > 80
    x, y = digits.images.float().requires_grad_(), torch.from_numpy(digits.labels)
    logits = Quantized()(x)
    F.cross_entropy(logits, y, reduction="sum").backward()
    zero = (x.grad.flatten(1) == 0).all(1) & (logits.argmax(1) == y)
    assert intervals(metrics)[("zero_grad_rate", None)] == pytest.approx(wilson(zero))


def test_an_empty_data_set_fails_with_a_named_error(nets):
    empty = EvalData(name="empty", labels=np.zeros(0, dtype=np.int64), num_classes=10,
                     source="test", images=torch.zeros((0, 1, 8, 8)))
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    for name in ("fgsm", "deepfool"):
        with pytest.raises(SuiteError, match=f"task {name}: the evaluated data set holds no"):
            run(context(model, empty), name)


def test_a_budget_violation_fails_the_task(nets, digits, monkeypatch):
    model = NormalizedModel(nets[0], MEAN, STD).eval()

    def overshooting(model, x, y, eps, **kwargs):
        return (x + 1.5 * eps).clamp(0, 1)

    monkeypatch.setattr(attacks.fixed, "pgd", overshooting)  # what the registered pgd calls
    with pytest.raises(BudgetError, match=r"task pgd, pgd at eps=0\.1: .* exceed the budget"):
        run(context(model, digits), "pgd", eps=[0.1])
    monkeypatch.setattr(attacks.fixed, "pgd", lambda model, x, y, eps, **kw: x + eps)
    with pytest.raises(BudgetError, match="leave the input bounds"):
        run(context(model, digits), "pgd", eps=[0.1])


@pytest.mark.parametrize(("name", "params", "message"), [
    ("fgsm", {"eps": []}, "'eps' must be a non-empty list"),
    ("fgsm", {"eps": [0.1, 0.1]}, "'eps' must be a non-empty list of distinct numbers >= 0"),
    ("fgsm", {"eps": [0.1, -0.1]}, "'eps' must be a non-empty list of distinct numbers >= 0"),
    ("pgd", {"norm": "l1"}, "'norm' must be one of 'linf', 'l2'"),
    ("pgd", {"steps": 0}, "'steps' must be an integer >= 1"),
    ("pgd", {"steps": 2.5}, "'steps' must be an integer >= 1"),
    ("pgd", {"restarts": 2, "random_start": False}, "restarts > 1 needs random_start"),
    ("fgsm", {"space": "normalised"}, "'space' must be one of"),
    ("cw", {"abort_early": 1}, "'abort_early' must be true or false"),
    ("transfer", {"attack_params": {"steps": 0}, "attack": "ifgsm"}, "'steps' must be an"),
    ("transfer", {}, "`surrogate` must name"),
    ("transfer", {"surrogate": "missing.pth"}, "not found"),
    ("transfer", {"surrogate": "x.pth", "attack": "pgd", "attack_params": {"stepz": 1}},
     "pgd has no parameter"),
])
def test_bad_parameters_are_named(nets, digits, tmp_path, name, params, message):
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    with pytest.raises(SuiteError, match=message):
        run(context(model, digits, ckpt_dir=tmp_path), name, **params)


# ------------------------------------------------------------------ per-sample records


RECORDED = [
    ("fgsm", {"eps": [0.05, 0.1], "top5": True}),
    ("ifgsm", {"eps": [0.1], "steps": 3, "top5": True}),
    ("pgd", {"eps": [0.05, 0.1], "steps": 3, "limit": 60, "top5": True}),
    ("pgd", {"eps": [0.5], "norm": "l2", "steps": 3, "space": "normalized", "top5": True}),
    ("deepfool", {"eps": [0.3, 0.6], "steps": 10}),
    ("cw", {"eps": [0.5], "binary_search_steps": 2, "steps": 10, "limit": 20}),
    ("ddn", {"eps": [0.5], "steps": 10, "limit": 30}),
    ("transfer", {"eps": [0.1], "surrogate": "s.pth", "attack": "ifgsm",
                  "attack_params": {"steps": 3}}),
]


def measure(nets, digits, tmp_path, name, params):
    """(task, validated params, records, metrics) of one attack task on nets[0]."""
    torch.save(nets[1].state_dict(), tmp_path / "s.pth")
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    task = get_task(name)
    params = resolve_params(task, params, "test suite")
    records, metrics = task.run(context(model, digits, ckpt_dir=tmp_path), params)
    return task, params, records, metrics


@pytest.mark.parametrize(("name", "params"), RECORDED)
def test_records_re_reduce_and_merge_from_shards_to_the_same_metrics(nets, digits, tmp_path,
                                                                     name, params):
    task, params, records, metrics = measure(nets, digits, tmp_path, name, params)
    assert task.reduce(Records.decode(records.encode()), params, 0) == metrics
    # shards: each table split by index parity, merged odd half first
    halves = [Records([t.take(t["index"] % 2 == parity) for t in records], dict(records.facts))
              for parity in (1, 0)]
    assert task.reduce(concat(halves), params, 0) == metrics


@pytest.mark.parametrize(("name", "params"), RECORDED)
def test_records_hold_what_the_metrics_count_per_sample(nets, digits, tmp_path, name, params):
    _, params, records, metrics = measure(nets, digits, tmp_path, name, params)
    limit = params["limit"]
    index = (stratified_subset(digits.labels, limit, 0) if limit else np.arange(len(digits)))
    model_table = [t for t in records if "eps" not in t.conditions]
    assert len(model_table) == 1
    model_table = model_table[0]
    base = dict(model_table.conditions)
    assert base == metrics[-1].conditions  # the model flags' conditions
    clean = NormalizedModel(nets[0], MEAN, STD).eval()(digits.images.float()[index])
    labels = torch.from_numpy(digits.labels[index])
    assert (model_table["correct"] == (clean.argmax(1) == labels).numpy()).all()
    for table in records:
        assert table["index"].dtype == np.int64 and (table["index"] == index).all()
        assert table["correct"].dtype == bool
    values = {(m.metric, m.conditions.get("eps")): m for m in metrics}
    n = len(index)
    for eps in params["eps"]:
        if name in ("deepfool", "cw", "ddn"):
            norm = model_table["perturbation_norm"]
            assert norm.dtype == np.float64
            assert (norm[~model_table["correct"]] == 0).all()
            broken = int((norm <= eps).sum())
        else:
            tagged = {"attack": name} if name in ("ifgsm", "pgd") else {}
            table = records.one(eps=eps, **base, **tagged)
            # `correct` is the final hit under the task's own attack, clean mistakes included
            assert (table["correct"] == (table["adv_correct"] & model_table["correct"])).all()
            assert (table["adv_correct"] == (table["pred"] == labels.numpy())).all()
            assert table["pred"].dtype == np.int32
            assert table["confidence"].dtype == np.float32
            assert not (table["correct"] & ~table["correct_top5"]).any()
            broken = int((~table["correct"]).sum())
            assert values[("top5_err", eps)].value == pytest.approx(
                100 * (~table["correct_top5"]).sum() / n)
        assert values[("top1_err", eps)].value == pytest.approx(100 * broken / n)
    if name != "transfer":
        assert model_table["zero_grad"].dtype == bool
    else:
        assert "zero_grad" not in model_table.columns
        assert base["surrogate"] == "s" and base["attack"] == "ifgsm"


def test_randomized_and_softmax_columns_carry_the_flags(nets, digits):
    net = nets[0]
    softmaxed = NormalizedModel(nn.Sequential(net, nn.Softmax(dim=1)), MEAN, STD).eval()
    randomized = NormalizedModel(nn.Sequential(net, nn.Dropout(0.5)), MEAN, STD).train()
    task = get_task("fgsm")
    params = resolve_params(task, {"eps": [0.05]}, "test suite")
    records, metrics = task.run(context(softmaxed, digits), params)
    model_table = records.one(space="pixel", norm="linf")
    assert model_table["softmax_output"].all() and not model_table["randomized"].any()
    assert table(metrics)[("flag_softmax_output", None)] == 1
    # one sample's outputs that are no probabilities clear the flag
    model_table.columns["softmax_output"][3] = False
    assert table(task.reduce(records, params, 0))[("flag_softmax_output", None)] == 0
    records, metrics = task.run(context(randomized, digits, batch_size=50), params)
    per_sample = records.one(space="pixel", norm="linf")["randomized"]
    assert per_sample.any() and table(metrics)[("flag_randomized", None)] == 1
    assert (per_sample.reshape(3, 50) == per_sample[::50, None]).all()  # one value per batch


# ------------------------------------------------------------------ end to end


def write_zoo(folder, nets):
    folder.mkdir()
    (folder / "rubench.toml").write_text(
        f'arch = "tinynets:tiny_cnn"\nnum_classes = 10\nmean = {MEAN}\nstd = {STD}\n')
    for i, net in enumerate(nets):
        torch.save(net.state_dict(), folder / f"m{i}.pth")


SUITE = """
name = "attacks-test"
version = "1"
[dataset]
name = "digits"
[model_defaults]
num_classes = 10
input_size = [8, 8]
[run]
seed = 0
batch_size = 64
limit = 90
[tasks.clean]
[tasks.fgsm]
eps = [0.05, 0.1]
[tasks.pgd]
eps = [0.1]
steps = 4
[tasks.pgd_l2]
task = "pgd"
norm = "l2"
eps = [0.5]
steps = 4
[tasks.ifgsm]
eps = [0.1]
steps = 4
[tasks.deepfool]
eps = [0.5]
steps = 10
[tasks.cw]
eps = [0.5]
binary_search_steps = 2
steps = 10
limit = 20
[tasks.ddn]
eps = [0.5]
steps = 10
limit = 20
[tasks.transfer]
surrogate = "m1.pth"
attack = "ifgsm"
attack_params = { steps = 3 }
eps = [0.1]
[tasks.transfer_fgsm]
task = "transfer"
surrogate = "m1.pth"
eps = [0.1]
"""


def test_end_to_end_all_tasks_deterministic_and_transfer_crafted_once(nets, tmp_path,
                                                                      monkeypatch):
    write_zoo(tmp_path / "zoo", nets)
    (tmp_path / "suite.toml").write_text(SUITE)
    loads: dict[str, list] = {"surrogate": [], "crafted": []}
    for name, request in (("surrogate", attack_tasks.SurrogateInput),
                          ("crafted", attack_tasks.CraftedInput)):
        original = request.load
        monkeypatch.setattr(request, "load", lambda self, ctx, original=original, name=name:
                            loads[name].append(self) or original(self, ctx))
    args = ["evaluate", str(tmp_path / "zoo"), "--suite", str(tmp_path / "suite.toml"),
            "--no-progress", "--out"]
    assert main([*args, str(tmp_path / "a")]) == 0
    assert len(loads["surrogate"]) == 1  # the run's one input cache: loaded once,
    assert len(loads["crafted"]) == 2  # each attack crafted on it once, for both targets
    results = pd.read_csv(tmp_path / "a" / "results.csv")
    assert set(results.checkpoint) == {"m0", "m1"}
    assert {"eps", "space", "norm", "attack", "surrogate"} <= set(results.columns)
    rows = results.set_index(["checkpoint", "task", "metric"])
    for ckpt in ("m0", "m1"):
        clean = rows.loc[(ckpt, "clean", "top1_err"), "value"]
        for task in ("fgsm", "pgd", "pgd_l2", "ifgsm", "deepfool", "cw", "ddn", "transfer",
                     "transfer_fgsm"):
            top1 = rows.loc[(ckpt, task, "top1_err"), "value"]
            assert (np.atleast_1d(top1) >= clean).all(), task
        flags = results[(results.checkpoint == ckpt) & results.metric.str.startswith("flag")]
        assert (flags.value == 0).all(), flags[flags.value != 0]
        assert flags.ci_low.isna().all()
    # every error rate carries its 95 % interval in the CSV, around its value
    rates = results[results.metric.isin(["top1_err", "top5_err", "fgsm_top1_err", "fail_rate",
                                         "zero_grad_rate"])]
    assert set(rates.task) == set(results.task)
    assert rates.ci_low.notna().all() and rates.ci_high.notna().all()
    assert ((rates.ci_low <= rates.value + 1e-9) & (rates.value <= rates.ci_high + 1e-9)).all()
    transfer = results[(results.task == "transfer") & (results.metric == "top1_err")]
    assert set(results[results.task == "transfer_fgsm"].attack.dropna()) == {"fgsm"}
    assert set(transfer.surrogate) == {"m1"} and set(transfer.attack) == {"ifgsm"}
    # white-box on the surrogate itself is stronger than the transfer to the other model
    white = transfer.set_index("checkpoint").value
    assert white["m1"] >= white["m0"]
    assert main([*args, str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "results.csv").read_bytes() == \
        (tmp_path / "b" / "results.csv").read_bytes()




def test_a_one_batch_attack_shows_the_model_passes_it_makes(nets, digits, monkeypatch):
    """Progress moves while one big batch is attacked: a bar counts image passes through the
    model (forward or backward), named after the task; the hook goes with the task."""
    bars = []

    class Recorded(attack_tasks.tqdm):
        def close(self):
            bars.append((self.desc, self.n))
            super().close()

    model = NormalizedModel(nets[0], MEAN, STD).eval()
    quiet = run(context(model, digits, batch_size=len(digits)), "pgd", eps=[0.1], steps=3)
    monkeypatch.setattr(attack_tasks, "tqdm", Recorded)
    ctx = context(model, digits, batch_size=len(digits))
    ctx.progress = True
    shown = run(ctx, "pgd", eps=[0.1], steps=3)
    passes = dict(bars)["pgd: model passes"]
    assert passes >= 2 * 3 * len(digits)  # 3 PGD steps and FGSM's, over the one batch
    assert not model._forward_hooks
    assert shown == quiet  # counting never touches the model's outputs


def test_counting_model_passes_leaves_outputs_alone_when_the_bar_redraws(nets, digits,
                                                                          monkeypatch):
    """A bar that redraws on every update (its `update` returns True) must not replace the
    model's outputs: forward hooks that return a value do."""

    class Redrawing(attack_tasks.tqdm):
        def update(self, n=1):
            super().update(n)
            return True

    monkeypatch.setattr(attack_tasks, "tqdm", Redrawing)
    model = NormalizedModel(nets[0], MEAN, STD).eval()
    quiet = run(context(model, digits, batch_size=len(digits)), "fgsm", eps=[0.1])
    ctx = context(model, digits, batch_size=len(digits))
    ctx.progress = True
    assert run(ctx, "fgsm", eps=[0.1]) == quiet
