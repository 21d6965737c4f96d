"""Affine deformations against torchvision, known geometry, seeding; per-index random numbers."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from scipy import stats
from torchvision.transforms import InterpolationMode

import benchmark.tasks.perturbations  # noqa: F401  (registers the tasks)
from benchmark.data import EvalData
from benchmark.errors import SuiteError
from benchmark.records import Records, concat
from benchmark.stats import wilson_interval
from benchmark.tasks import TaskContext, get_task, resolve_params
from corruptions.affine import affine, affine_params
from corruptions.per_index import uniforms


def torchvision_affine(image, angle, scale, shear):
    return TF.affine(image, angle=float(angle), translate=[0, 0], scale=float(scale),
                     shear=[float(shear), 0.0], interpolation=InterpolationMode.NEAREST,
                     fill=[0.0])


@pytest.mark.parametrize(("height", "width"), [(8, 8), (32, 32), (7, 9), (31, 32)])
def test_batched_affine_equals_torchvision_per_image(height, width):
    gen = torch.Generator().manual_seed(height * width)
    images = torch.rand(24, 3, height, width, generator=gen)
    rng = np.random.default_rng(0)
    angle = rng.uniform(-40, 40, 24)
    shear = rng.uniform(-57.3, 57.3, 24)
    scale = rng.choice([0.6, 0.8, 1.2, 1.4, 1.0], 24)
    out = affine(images, angle, scale, shear)
    for i in range(24):
        assert torch.equal(out[i], torchvision_affine(images[i], angle[i], scale[i], shear[i]))


def test_identity_is_the_clean_image():
    images = torch.rand(5, 3, 9, 8)
    assert torch.equal(affine(images), images)
    assert torch.equal(affine(images, np.zeros(5), np.ones(5), np.zeros(5)), images)


@pytest.mark.parametrize("side", [4, 7, 8])
def test_quarter_turns_are_exact_pixel_permutations(side):
    images = torch.rand(3, 2, side, side)
    # torchvision's affine angle turns clockwise on screen: +90 is rot90 with k = -1
    assert torch.equal(affine(images, 90.0), torch.rot90(images, -1, (2, 3)))
    assert torch.equal(affine(images, -90.0), torch.rot90(images, 1, (2, 3)))
    assert torch.equal(affine(images, 180.0), torch.flip(images, (2, 3)))


def test_scale_conventions_shrink_or_magnify():
    ones = torch.ones(1, 1, 8, 8)
    # torchvision: scale 0.5 shrinks the content to a 4x4 square, black around it
    assert int(affine(ones, scale=0.5).sum()) == 16
    assert int(affine(ones, scale=2.0).sum()) == 64
    _, tv_scale, _ = affine_params("scale", 0.5, np.arange(3), 0, "torchvision")
    _, zoom_scale, _ = affine_params("scale", 0.5, np.arange(3), 0, "zoom")
    assert list(tv_scale) == [0.5] * 3 and list(zoom_scale) == [2.0] * 3  # Zoom(0.5) magnifies


def test_x_shear_moves_rows_not_columns():
    # a single bright row through the centre stays put under an x-shear; a column tilts
    row = torch.zeros(1, 1, 9, 9)
    row[..., 4, :] = 1
    assert torch.equal(affine(row, shear=30.0), row)
    column = row.transpose(2, 3)
    tilted = affine(column, shear=30.0)[0, 0]
    assert not torch.equal(tilted, column[0, 0])
    assert tilted[4, 4] == 1  # the centre is fixed
    assert torch.equal(tilted.sum(1), torch.ones(9))  # one pixel per row: a sheared line


def test_random_parameters_depend_only_on_seed_and_index():
    everyone = np.arange(1000)
    angle, scale, shear = affine_params("rotation", 20.0, everyone, seed=7)
    assert (np.abs(angle) <= 20).all() and (scale == 1).all() and (shear == 0).all()
    assert stats.kstest(angle, stats.uniform(-20, 40).cdf).pvalue > 1e-3
    some = np.array([999, 3, 500])
    assert np.array_equal(affine_params("rotation", 20.0, some, seed=7)[0], angle[some])
    assert not np.array_equal(affine_params("rotation", 20.0, some, seed=8)[0], angle[some])
    # the magnitudes of one kind share the draw: U(-40, 40) is twice U(-20, 20) image by image
    assert np.allclose(affine_params("rotation", 40.0, everyone, seed=7)[0], 2 * angle)
    _, _, shear = affine_params("shear", 28.6, everyone, seed=7)
    assert (np.abs(shear) <= 28.6).all() and abs(np.corrcoef(shear, angle)[0, 1]) < 0.1


def test_per_index_uniforms_are_uniform_independent_and_keyed():
    u = uniforms(0, 1, np.arange(20000), draws=2)
    assert u.shape == (20000, 2) and (u >= 0).all() and (u < 1).all()
    assert stats.kstest(u[:, 0], "uniform").pvalue > 1e-3
    assert stats.kstest(u[:, 1], "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.03
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.03  # neighbouring indices
    other_stream = uniforms(0, 2, np.arange(20000))[:, 0]
    assert abs(np.corrcoef(u[:, 0], other_stream)[0, 1]) < 0.03
    assert np.array_equal(uniforms(0, 1, [17, 5], draws=2), u[[17, 5]])
    assert not np.array_equal(uniforms(1, 1, [17, 5]), u[[17, 5], :1])
    with pytest.raises(ValueError, match="non-negative"):
        uniforms(0, 1, [-1])


class Recorder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x):
        self.seen.append(x.clone())
        return self.net(x)


def make_ctx(model, data, batch_size, seed=0):
    return TaskContext(model=model, data=data, seed=seed, device=torch.device("cpu"),
                       batch_size=batch_size, progress=False, meta={"mean": [0.5]})


def run(ctx, **params):
    """The task as the runner calls it: parameters validated (as at suite load), then run."""
    task = get_task("affine")
    return task.run(ctx, resolve_params(task, params, "test suite"))[1]


def test_task_matches_torchvision_reference_and_is_batch_size_free():
    n = 60
    images = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data = EvalData(name="rand", labels=np.arange(n) % 10, num_classes=10, source="rand",
                    images=images)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    metrics = run(make_ctx(net, data, 16, seed=5))
    sets = [("rotation", 20.0), ("rotation", 40.0), ("shear", 28.6), ("shear", 57.3),
            ("scale", 0.6), ("scale", 0.8), ("scale", 1.2), ("scale", 1.4)]
    wrong = []  # per set, per image
    for transform, magnitude in sets:
        angle, scale, shear = affine_params(transform, magnitude, np.arange(n), seed=5)
        deformed = torch.stack([torchvision_affine(images[i], angle[i], scale[i], shear[i])
                                for i in range(n)])
        with torch.no_grad():
            wrong.append(net(deformed).argmax(1).numpy() != data.labels)
    expected = [100.0 * float(w.mean()) for w in wrong]
    rows = [m for m in metrics if m.metric == "top1_err"]
    assert [(m.conditions["transform"], m.conditions["magnitude"]) for m in rows] == sets
    assert [m.value for m in rows] == pytest.approx(expected)
    for row, w in zip(rows, wrong, strict=True):  # Wilson interval of the count
        low, high = wilson_interval(int(w.sum()), n)
        assert (row.ci_low, row.ci_high) == pytest.approx((100 * low, 100 * high))
    mean = [m for m in metrics if m.metric == "mean_err"]
    assert len(mean) == 1 and mean[0].value == pytest.approx(np.mean(expected), rel=1e-12)
    # image bootstrap of each image's share of failed sets ~ the normal approximation
    shares = np.mean(wrong, axis=0)
    half = 100 * 1.96 * shares.std() / np.sqrt(n)
    assert mean[0].n == n and mean[0].ci_low < mean[0].value < mean[0].ci_high
    assert mean[0].ci_low == pytest.approx(mean[0].value - half, abs=0.25 * half)
    assert mean[0].ci_high == pytest.approx(mean[0].value + half, abs=0.25 * half)
    # same images seen by two different models at two batch sizes
    seen = []
    for batch_size, seed in [(60, 1), (13, 2)]:
        torch.manual_seed(seed)
        model = Recorder(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
        run(make_ctx(model.eval(), data, batch_size, seed=5), rotations=[40.0], shears=[57.3],
            scales=[0.6])
        seen.append([torch.cat(model.seen[k::3]) for k in range(3)])
    assert all(torch.equal(a, b) for a, b in zip(*seen, strict=True))


def test_zoom_convention_names_its_rows_and_bad_parameters_fail():
    data = EvalData(name="rand", labels=np.arange(20) % 10, num_classes=10, source="rand",
                    images=torch.rand(20, 1, 8, 8))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    metrics = run(make_ctx(net, data, 20), scale_convention="zoom", rotations=[20.0],
                  shears=[], scales=[0.6])
    assert [m.conditions.get("transform") for m in metrics] == ["rotation", "zoom", None]
    for bad, match in [({"scale_convention": "pil"}, "scale_convention"),
                       ({"rotations": [], "shears": [], "scales": []}, "no set"),
                       ({"scales": [0.0]}, "scales"), ({"rotations": "20"}, "rotations"),
                       ({"shears": [28.6, 28.6]}, "distinct")]:
        with pytest.raises(SuiteError, match=match):
            run(make_ctx(net, data, 20), **bad)


def test_records_hold_one_table_per_set_and_re_reduce():
    n = 35
    data = EvalData(name="rand", labels=np.arange(n) % 10, num_classes=10, source="rand",
                    images=torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    task = get_task("affine")
    for given in ({}, {"scale_convention": "zoom", "shears": []}):
        params = resolve_params(task, given, "test suite")
        records, metrics = task.run(make_ctx(net, data, 16, seed=4), params)
        assert task.reduce(Records.decode(records.encode()), params, 4) == metrics
        halves = concat(Records([t.take(t["index"] % 2 == parity) for t in records])
                        for parity in (0, 1))
        assert task.reduce(halves, params, 4) == metrics
        assert [t.conditions for t in records] == [m.conditions for m in metrics
                                                   if m.metric == "top1_err"]
        for t in records:
            assert set(t.columns) == {"index", "correct", "correct_top5", "pred", "confidence"}
            assert np.array_equal(t["index"], np.arange(n))
        angle, scale, shear = affine_params("rotation", 40.0, np.arange(n), seed=4)
        deformed = torch.stack([torchvision_affine(data.images[i], angle[i], scale[i], shear[i])
                                for i in range(n)])
        with torch.no_grad():
            expected = net(deformed).argmax(1).numpy()
        assert np.array_equal(records.one(transform="rotation", magnitude=40.0)["pred"],
                              expected)
