"""In-between-class samples: partners, mixes, boxes, and the "neither class" share by hand."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import benchmark.tasks.perturbations  # noqa: F401  (registers the tasks)
from benchmark.data import EvalData
from benchmark.errors import SuiteError
from benchmark.records import Records, concat
from benchmark.tasks import TaskContext, get_task, resolve_params
from corruptions.inbetween import cut_boxes, cutmix, mixup, neither_count, partners


def test_partners_are_of_another_class_uniform_and_seeded():
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3] * 50)
    mates = partners(labels, seed=0)
    assert (labels[mates] != labels).all()
    assert np.array_equal(partners(labels, seed=0), mates)
    assert not np.array_equal(partners(labels, seed=1), mates)
    # image 0 (class 0) picks uniformly among the 300 images of classes 1, 2, 3: pool many seeds
    picks = np.array([partners(labels[:8], seed=s)[0] for s in range(3000)])
    counts = np.bincount(picks, minlength=8)
    assert counts[0] == counts[1] == 0
    assert stats.chisquare(counts[2:]).pvalue > 1e-3
    with pytest.raises(ValueError, match="two classes"):
        partners(np.zeros(5, dtype=int), seed=0)


def test_mixup_and_cutmix_pixels():
    x1, x2 = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    assert torch.allclose(mixup(x1, x2, 0.3), 0.3 * x1 + 0.7 * x2)
    boxes = np.array([[0, 8, 0, 8], [2, 5, 1, 7], [0, 0, 0, 0], [7, 8, 7, 8]])
    out = cutmix(x1, x2, boxes)
    for j, (top, bottom, left, right) in enumerate(boxes):
        expected = x1[j].clone()
        for r in range(top, bottom):
            for c in range(left, right):
                expected[:, r, c] = x2[j, :, r, c]
        assert torch.equal(out[j], expected)


@pytest.mark.parametrize("lam", [0.1, 0.25, 0.5])
def test_inside_boxes_have_the_rounded_area_and_stay_inside(lam):
    boxes = cut_boxes(np.arange(500), 32, 32, lam, seed=0)
    side = {0.1: 30, 0.25: 28, 0.5: 23}[lam]  # round(32 * sqrt(1 - lam)): 30.4, 27.7, 22.6
    assert ((boxes[:, 1] - boxes[:, 0]) == side).all()
    assert ((boxes[:, 3] - boxes[:, 2]) == side).all()
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [1, 3]] <= 32).all()
    assert set(boxes[:, 0]) == set(boxes[:, 2]) == set(range(32 - side + 1))  # all reachable
    assert np.array_equal(cut_boxes(np.array([9, 2]), 32, 32, lam, seed=0), boxes[[9, 2]])


def test_clipped_boxes_follow_cutmix_sampler():
    boxes = cut_boxes(np.arange(2000), 32, 32, 0.5, seed=1, placement="clipped")
    cut = int(32 * math.sqrt(0.5))  # 22: CutMix's int() truncation; extent centre -/+ 11
    heights, widths = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
    assert (heights <= cut).all() and (widths <= cut).all()
    assert (boxes >= 0).all() and (boxes <= 32).all()
    full = (heights == cut) & (widths == cut)  # centre at least 11 px from both borders
    assert 0 < full.mean() < 1
    assert ((heights * widths).mean() / 1024) < 0.5  # clipping pastes less than 1 - lam


def test_neither_count():
    predictions = torch.tensor([0, 1, 2, 3, 4])
    assert neither_count(predictions, torch.tensor([0, 0, 0, 3, 9]),
                         torch.tensor([5, 1, 5, 5, 8])) == 2  # images 2 and 4


class Brightness(torch.nn.Module):
    """Crafted model: predicts class round(10 * mean pixel value), clipped to 0..9."""

    def forward(self, x):
        cls = torch.clamp(torch.round(10 * x.mean(dim=(1, 2, 3))), 0, 9).long()
        return torch.nn.functional.one_hot(cls, 10).float()


def constant_images(labels, side=8):
    """Image of class k: every pixel k / 10, which the crafted model classifies correctly."""
    values = torch.tensor(labels, dtype=torch.float32) / 10
    return EvalData(name="const", labels=np.asarray(labels), num_classes=10, source="const",
                    images=values.view(-1, 1, 1, 1).expand(-1, 1, side, side).clone())


def run(data, batch_size=64, seed=0, **params):
    ctx = TaskContext(model=Brightness(), data=data, seed=seed, device=torch.device("cpu"),
                      batch_size=batch_size, progress=False)
    task = get_task("inbetween")
    return {(m.conditions["mix"], m.conditions["lam"]): m
            for m in task.run(ctx, resolve_params(task, params, "test suite"))[1]}


def test_neither_rate_by_hand_on_two_images():
    # Two 8x8 images of classes 0 and 4 (pixels 0.0 and 0.4), each the other's partner; the
    # model predicts round(10 * mean pixel). Mixup lam * x1 + (1 - lam) * x2:
    #   lam 0.1:  means 0.36 -> 4 (x2's class) and 0.04 -> 0 (x2's): neither 0 %
    #   lam 0.25: means 0.30 -> 3 and 0.10 -> 1: neither 100 %
    #   lam 0.5:  means 0.20 -> 2 and 0.20 -> 2: neither 100 %
    # CutMix, box inside the image, side round(8 * sqrt(1 - lam)) pasted from x2:
    #   lam 0.1:  8 px, all of x2: predictions are x2's classes: neither 0 %
    #   lam 0.25: 7 px, 49/64 of x2: means 0.306 -> 3 and 0.094 -> 1: neither 100 %
    #   lam 0.5:  6 px, 36/64 of x2: means 0.225 -> 2 and 0.175 -> 2: neither 100 %
    got = run(constant_images([0, 4]), lams=[0.1, 0.25, 0.5])
    assert {k: m.value for k, m in got.items()} == {
        ("mixup", 0.1): 0.0, ("mixup", 0.25): 100.0, ("mixup", 0.5): 100.0,
        ("cutmix", 0.1): 0.0, ("cutmix", 0.25): 100.0, ("cutmix", 0.5): 100.0}
    assert got["cutmix", 0.5].conditions == {"mix": "cutmix", "lam": 0.5, "box": "inside"}
    assert got["mixup", 0.5].conditions == {"mix": "mixup", "lam": 0.5}
    assert got["mixup", 0.5].n == 2


@pytest.mark.parametrize("batch_size", [100, 7])
def test_neither_rate_matches_arithmetic_on_many_pairs(batch_size):
    # 10x10 images and these lams keep every 10 * mean pixel >= 0.01 away from a rounding tie
    labels = np.arange(100) % 10
    data = constant_images(labels, side=10)
    lams = [0.2, 0.35, 0.45]
    got = run(data, batch_size=batch_size, seed=3, lams=lams)
    mates = partners(labels, seed=3)
    y1, y2 = labels, labels[mates]
    for lam in lams:
        mixed = np.clip(np.round(10 * (lam * y1 / 10 + (1 - lam) * y2 / 10)), 0, 9)
        expected = 100 * np.mean((mixed != y1) & (mixed != y2))
        assert got["mixup", lam].value == pytest.approx(expected)
        side = math.floor(10 * math.sqrt(1 - lam) + 0.5)  # 9, 8, 7 px
        area = side * side / 100
        predicted = np.clip(np.round((1 - area) * y1 + area * y2), 0, 9)
        expected = 100 * np.mean((predicted != y1) & (predicted != y2))
        assert got["cutmix", lam].value == pytest.approx(expected)
        assert got["cutmix", lam].n == 100


def test_parameters_are_checked():
    data = constant_images([0, 4])
    for bad, match in [({"lams": [0.0]}, "lams"), ({"lams": [0.6]}, "lams"),
                       ({"mixes": ["blend"]}, "mixes"), ({"box": "centre"}, "box")]:
        with pytest.raises(SuiteError, match=match):
            run(data, **bad)


def test_records_hold_one_table_per_mix_and_re_reduce():
    # 8x8 images: CutMix lams 0.2 and 0.3 both paste 7 px boxes, one shared pass
    labels = np.arange(60) % 10
    data = constant_images(labels)
    ctx = TaskContext(model=Brightness(), data=data, seed=5, device=torch.device("cpu"),
                      batch_size=16, progress=False)
    task = get_task("inbetween")
    params = resolve_params(task, {"lams": [0.1, 0.2, 0.3, 0.5]}, "test suite")
    records, metrics = task.run(ctx, params)
    assert task.reduce(Records.decode(records.encode()), params, 5) == metrics
    halves = concat(Records([t.take(t["index"] % 2 == parity) for t in records])
                    for parity in (0, 1))
    assert task.reduce(halves, params, 5) == metrics
    assert [t.conditions for t in records] == [m.conditions for m in metrics]
    mates = partners(labels, seed=5)
    for t in records:
        assert set(t.columns) == {"index", "partner", "pred", "confidence", "neither"}
        assert np.array_equal(t["index"], np.arange(60)) and np.array_equal(t["partner"], mates)
        assert np.array_equal(t["neither"], (t["pred"] != labels) & (t["pred"] != labels[mates]))
    mixed = np.clip(np.round(0.2 * labels + 0.8 * labels[mates]), 0, 9)  # never a .5 tie
    assert np.array_equal(records.one(mix="mixup", lam=0.2)["pred"], mixed)
    twin = records.one(mix="cutmix", lam=0.3, box="inside")
    assert np.array_equal(twin["pred"], records.one(mix="cutmix", lam=0.2, box="inside")["pred"])
