"""Occlusion: hole geometry, fills, the task against an explicit reference, end-to-end runs."""

import numpy as np
import pandas as pd
import pytest
import torch

import benchmark.tasks.perturbations  # noqa: F401  (registers occlusion, affine, inbetween)
from benchmark.cli import main
from benchmark.data import EvalData
from benchmark.errors import SuiteError
from benchmark.records import Records, concat
from benchmark.stats import wilson_interval
from benchmark.tasks import TaskContext, get_task, resolve_params
from corruptions.occlusion import hole_box, hole_side, occlude


@pytest.mark.parametrize(("frac", "size", "side"), [
    (0.5, 8, 4), (0.0, 8, 0), (1.0, 8, 8),
    (1 / 16, 8, 1),   # 0.5 px rounds half up to 1
    (0.15, 10, 2),    # 0.15 * 10 is 1.5000000000000002 in floats, 1.5 exactly: up to 2
    (0.3, 32, 10),    # 9.6 -> 10
    (0.1, 32, 3),     # 3.2 -> 3
])
def test_hole_side_rounds_half_up(frac, size, side):
    assert hole_side(frac, size) == side


def test_hole_box_is_centred_half_a_pixel_up_left_when_odd():
    # 8 px image, 3 px hole: the 5 px border splits 2 above / 3 below -> rows 2, 3, 4
    assert hole_box(3 / 8, 8, 8) == (2, 5, 2, 5)
    # 4 px hole on 8 px: 2 + 4 + 2, exactly centred
    assert hole_box(0.5, 8, 8) == (2, 6, 2, 6)
    # non-square: each side scales with its own size (9 * 0.5 = 4.5 -> 5; 6 * 0.5 = 3)
    assert hole_box(0.5, 9, 6) == (2, 7, 1, 4)


@pytest.mark.parametrize("size", [8, 9, 32])
def test_a_hole_of_side_h_fills_exactly_h_squared_pixels(size):
    images = torch.rand(3, 2, size, size) + 1.0  # never 0, so filled pixels are the zeros
    for h in range(size + 1):
        out = occlude(images, h / size, "center", 0.0)
        zeros = out[0, 0] == 0
        assert int(zeros.sum()) == h * h
        if h:
            rows, cols = torch.nonzero(zeros, as_tuple=True)
            top, left = int(rows.min()), int(cols.min())
            assert (int(rows.max()) - top + 1, int(cols.max()) - left + 1) == (h, h)  # a square
            assert top == (size - h) // 2 and left == (size - h) // 2
            assert size - (top + h) - top in (0, 1)  # centred, extra row below when odd
        assert torch.equal(out[zeros.expand_as(out)], torch.zeros(3 * 2 * h * h))
        assert torch.equal(out[~zeros.expand_as(out)], images[~zeros.expand_as(out)])
        boundary = occlude(images, h / size, "boundary", 0.0)
        assert int((boundary[0, 0] == 0).sum()) == size * size - h * h
        # center and boundary fill complementary regions: with fill 0 they add up to the image
        assert torch.equal(out + boundary, images)


def test_extremes_clean_and_all_fill():
    images = torch.rand(4, 3, 8, 8)
    fill = [0.1, 0.2, 0.3]
    filled = torch.tensor(fill).view(1, 3, 1, 1).expand_as(images)
    assert torch.equal(occlude(images, 1.0, "boundary", fill), images)
    assert torch.equal(occlude(images, 0.0, "center", fill), images)
    assert torch.equal(occlude(images, 1.0, "center", fill), filled)
    assert torch.equal(occlude(images, 0.0, "boundary", fill), filled)


def test_mean_fill_is_zero_after_normalization():
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    out = occlude(torch.rand(2, 3, 8, 8), 0.5, "center", mean)
    normalized = (out - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert torch.equal(normalized[:, :, 2:6, 2:6], torch.zeros(2, 3, 4, 4))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="fraction"):
        hole_side(1.5, 8)
    with pytest.raises(ValueError, match="mode"):
        occlude(torch.rand(1, 1, 8, 8), 0.5, "edges")
    with pytest.raises(ValueError, match="channels"):
        occlude(torch.rand(1, 3, 8, 8), 0.5, "center", [0.0, 0.0])


class Recorder(torch.nn.Module):
    """Wraps a model and keeps a copy of every batch it is shown."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x):
        self.seen.append(x.clone().cpu())
        return self.net(x)


def linear_model(seed, channels=1, side=8, classes=10):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(channels * side * side,
                                                                   classes)).eval()


def random_data(n=120, channels=1, side=8, classes=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return EvalData(name="rand", labels=(np.arange(n) % classes), num_classes=classes,
                    source="torch.rand", images=torch.rand(n, channels, side, side, generator=gen))


def context(model, data, batch_size=32, seed=0, mean=(0.3,)):
    return TaskContext(model=model, data=data, seed=seed, device=torch.device("cpu"),
                       batch_size=batch_size, progress=False, meta={"mean": list(mean)})


def run(task, ctx, **params):
    """The task as the runner calls it: parameters validated (as at suite load), then run."""
    definition = get_task(task)
    return definition.run(ctx, resolve_params(definition, params, "test suite"))[1]


def halves(records):
    """The records split by index parity into two shards, merged back."""
    return concat(Records([t.take(t["index"] % 2 == parity) for t in records], dict(records.facts))
                  for parity in (0, 1))


def table(metrics):
    return {(m.metric, tuple(sorted(m.conditions.items()))): m.value for m in metrics}


def reference_occlusion_errors(model, data, fracs, mode, fill):
    """Every (mode, frac) computed the slow way: a mask from explicit loops, one full pass each.
    Per frac, per image: misclassified or not."""
    images = data.images.numpy()
    side = images.shape[-1]
    wrong = []
    for frac in fracs:
        h = int(np.floor(frac * side + 0.5 + 1e-9))
        start = (side - h) // 2
        inside = np.zeros((side, side), dtype=bool)
        for r in range(start, start + h):
            for c in range(start, start + h):
                inside[r, c] = True
        region = inside if mode == "center" else ~inside
        occluded = np.where(region, np.asarray(fill).reshape(-1, 1, 1), images)
        with torch.no_grad():
            pred = model(torch.from_numpy(occluded).float()).argmax(1).numpy()
        wrong.append(pred != data.labels)
    return wrong


def interval(metric):
    return metric.ci_low, metric.ci_high


@pytest.mark.parametrize("fill_name", ["black", "mean"])
def test_task_matches_an_explicit_reference(fill_name):
    data, model = random_data(), linear_model(1)
    fracs = [0.0, 0.125, 0.3, 0.5, 0.75, 1.0]
    metrics = run("occlusion", context(model, data, mean=(0.3,)), hole_fracs=fracs,
                  fill=fill_name)
    got = table(metrics)
    rows = {(m.metric, m.conditions.get("mode"), m.conditions.get("hole_frac")): m
            for m in metrics}
    fill = 0.0 if fill_name == "black" else 0.3
    for mode in ("center", "boundary"):
        wrong = reference_occlusion_errors(model, data, fracs, mode, fill)
        expected = [100.0 * np.mean(w) for w in wrong]
        values = [got["top1_err", (("fill", fill_name), ("hole_frac", f), ("mode", mode))]
                  for f in fracs]
        assert values == pytest.approx(expected)
        for frac, w in zip(fracs, wrong, strict=True):  # Wilson interval of the count
            low, high = wilson_interval(int(w.sum()), 120)
            assert interval(rows["top1_err", mode, frac]) == pytest.approx((100 * low,
                                                                             100 * high))
        mean = rows["mean_err", mode, None]
        assert mean.value == pytest.approx(np.mean(expected), rel=1e-12)
        # image bootstrap of each image's share of failed hole sizes ~ normal approximation
        shares = np.mean(wrong, axis=0)
        half = 100 * 1.96 * shares.std() / np.sqrt(120)
        assert mean.n == 120 and mean.ci_low < mean.value < mean.ci_high
        assert interval(mean) == pytest.approx((mean.value - half, mean.value + half),
                                               abs=0.25 * half)
    occ, center = rows["occlusion_err", "center", None], rows["mean_err", "center", None]
    assert (occ.value, occ.n, interval(occ)) == (center.value, center.n, interval(center))


def test_occlusion_err_at_one_hole_size_and_parameter_checks():
    data, model = random_data(), linear_model(2)
    metrics = run("occlusion", context(model, data), occ_err_mode="boundary", occ_err_frac=0.5)
    occ = [m for m in metrics if m.metric == "occlusion_err"]
    cell = [m for m in metrics if m.metric == "top1_err" and m.conditions["hole_frac"] == 0.5
            and m.conditions["mode"] == "boundary"]
    assert len(occ) == len(cell) == 1
    assert occ[0].conditions == {"fill": "mean", "hole_frac": 0.5, "mode": "boundary"}
    assert (occ[0].value, occ[0].ci_low, occ[0].ci_high) == (cell[0].value, cell[0].ci_low,
                                                             cell[0].ci_high)  # Wilson
    assert occ[0].ci_low < occ[0].value < occ[0].ci_high
    for bad, match in [({"hole_fracs": [0.5, 1.2]}, r"'hole_fracs' must be .* <= 1; got \[0.5"),
                       ({"modes": ["center", "side"]}, "modes"),
                       ({"fill": "grey"}, "fill"),
                       ({"occ_err_frac": 0.3}, "occ_err_frac"),
                       ({"modes": ["boundary"]}, "occ_err_mode")]:
        with pytest.raises(SuiteError, match=match):
            run("occlusion", context(model, data), **bad)
    no_mean = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                          batch_size=32, progress=False)
    with pytest.raises(SuiteError, match="normalization mean"):
        run("occlusion", no_mean)


def test_passes_are_shared_and_clean_pass_reused():
    data = random_data(n=40)
    model = Recorder(linear_model(3))
    ctx = context(model, data, batch_size=40)
    ctx.clean_logits()
    model.seen.clear()
    run("occlusion", ctx, hole_fracs=[0.0, 0.5, 0.51, 1.0], modes=["center"])
    # 0.0 reuses the clean pass, 0.5 and 0.51 both round to 4 px (one pass), 1.0 is all fill:
    # one pass over the 40 images plus one single-image pass
    assert [len(x) for x in model.seen] == [40, 1]


def test_same_perturbed_images_for_every_checkpoint_and_batch_size():
    data = random_data(n=50)
    seen = []
    for seed, batch_size in [(4, 50), (5, 7)]:
        model = Recorder(linear_model(seed))
        run("occlusion", context(model, data, batch_size=batch_size), modes=["center"],
            hole_fracs=[0.25, 0.5])
        seen.append(torch.cat(model.seen[0::2]))  # the 0.25 pass of every batch
    assert torch.equal(seen[0], seen[1])


TINY = "tinynets:tiny_cnn"


def test_end_to_end_identical_across_checkpoints_and_batch_sizes(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "rubench.toml").write_text(f'arch = "{TINY}"\nnum_classes = 10\nmean = [0.3]\n'
                                      'std = [0.25]\n')
    from benchmark.archs import build_arch
    torch.manual_seed(0)
    state = build_arch(TINY, num_classes=10).state_dict()
    torch.save(state, zoo / "a.pth")
    torch.save(state, zoo / "b.pth")  # same weights under a second name
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "perturb"\nversion = "1"\n[dataset]\nname = "digits"\nsplit = "test"\n'
        "[run]\nseed = 3\nlimit = 200\n"
        "[tasks.occlusion]\nhole_fracs = [0.0, 0.25, 0.5, 0.75, 1.0]\n"
        "[tasks.occlusion_black]\ntask = \"occlusion\"\nfill = \"black\"\nmodes = [\"center\"]\n"
        "[tasks.affine]\n[tasks.inbetween]\nlams = [0.25, 0.5]\n")
    results = {}
    for batch_size in (200, 33):
        out = tmp_path / f"out{batch_size}"
        assert main(["evaluate", str(zoo), "--suite", str(suite), "--out", str(out),
                     "--batch-size", str(batch_size), "--no-progress"]) == 0
        results[batch_size] = pd.read_csv(out / "results.csv")
    frame = results[200]
    value_cols = ["task", "metric", "mode", "fill", "hole_frac", "transform", "magnitude",
                  "mix", "lam", "box", "value", "n"]
    a = frame[frame.checkpoint == "a"][value_cols].reset_index(drop=True)
    b = frame[frame.checkpoint == "b"][value_cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(frame[value_cols], results[33][value_cols])
    assert set(frame.task) == {"occlusion", "occlusion_black", "affine", "inbetween"}
    assert (frame.n == 200).all()
    # every row is a rate or a mean of rates: each carries its interval in the CSV
    assert frame.ci_low.notna().all() and frame.ci_high.notna().all()
    assert ((frame.ci_low <= frame.value + 1e-9) & (frame.value <= frame.ci_high + 1e-9)).all()
    black = frame[(frame.task == "occlusion_black") & (frame.metric == "top1_err")]
    assert list(black[black.checkpoint == "a"].hole_frac) == [k / 8 for k in range(9)]  # default
    assert (black["fill"] == "black").all() and (black["mode"] == "center").all()


@pytest.mark.parametrize("params", [
    {"hole_fracs": [0.0, 0.25, 0.5, 0.51, 1.0]},
    {"hole_fracs": [0.0, 0.5, 1.0], "fill": "black", "occ_err_mode": "boundary",
     "occ_err_frac": 0.5},
])
def test_records_hold_one_table_per_cell_and_re_reduce(params):
    data, model = random_data(n=45, classes=10), linear_model(6)
    ctx = context(model, data, batch_size=16, seed=2)
    task = get_task("occlusion")
    params = resolve_params(task, params, "test suite")
    records, metrics = task.run(ctx, params)
    assert task.reduce(Records.decode(records.encode()), params, 2) == metrics
    assert task.reduce(halves(records), params, 2) == metrics
    assert [t.conditions for t in records] == [m.conditions for m in metrics
                                               if m.metric == "top1_err"]
    fill = params["fill"]
    for t in records:
        assert set(t.columns) == {"index", "correct", "correct_top5", "pred", "confidence"}
        assert np.array_equal(t["index"], np.arange(45))
        assert t["pred"].dtype == np.int32 and t["confidence"].dtype == np.float32
    clean = ctx.clean_logits().argmax(1).numpy()
    unchanged = records.one(mode="center", fill=fill, hole_frac=0.0)  # the clean pass
    assert np.array_equal(unchanged["pred"], clean)
    assert np.array_equal(records.one(mode="boundary", fill=fill, hole_frac=1.0)["pred"], clean)
    blank = records.one(mode="center", fill=fill, hole_frac=1.0)  # one all-fill image
    assert len(set(blank["pred"])) == 1 and len(set(blank["confidence"])) == 1
    assert np.array_equal(blank["correct"], blank["pred"] == data.labels)
    wrong = reference_occlusion_errors(model, data, [0.5], "center",
                                       0.3 if fill == "mean" else 0.0)[0]
    assert np.array_equal(~records.one(mode="center", fill=fill, hole_frac=0.5)["correct"], wrong)
