"""Executors and shards: a split or distributed run stores what the local, unsplit one does.

Ray runs on a local Ray with 2 CPUs that the test starts itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_runner import evaluate, make_zoo
from torch import nn

from benchmark.archs.registry import register_arch
from benchmark.records import Records
from benchmark.reductions import register_metric
from benchmark.runner import shards
from benchmark.stats import Metric
from benchmark.tasks import register_task
from benchmark.tasks.registry import Axis, Shard, TaskContext, predict
from benchmark.worker import for_device, is_out_of_memory

SUITE = """name = "split"
version = "1"
[dataset]
name = "digits"
[model_defaults]
num_classes = 10
[run]
batch_size = 32
[tasks.clean]
[tasks.calibration]
[tasks.pgd]
eps = [0.0625, 0.125]
steps = 3
limit = 150
[tasks.deepfool]
steps = 5
limit = 100
[tasks.corruptions]
generate = true
corruptions = ["gaussian_noise", "contrast", "pixelate"]
severities = [1, 3]
"""


def split_suite(folder: Path) -> Path:
    """Tasks of every kind: unsplit (calibration), split by images (clean), by attacked points
    with random starts (pgd, its `limit` subset) and by corruption cells."""
    path = folder / "split.toml"
    path.write_text(SUITE)
    return path


def results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", low_memory=False)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split") / "zoo"
    make_zoo(folder, seeds=(0, 1))
    return folder


@pytest.fixture(scope="module")
def unsplit(zoo, one_thread):
    out = zoo.parent / "unsplit"
    data = zoo.parent / "data"
    assert evaluate(zoo, out, "--suite", str(split_suite(zoo.parent)), "--limit", "300",
                    "--data-root", str(data)) == 0
    return results(out)


def test_shards_cover_the_axis_at_batch_multiples():
    assert shards(None, 100, 32) == [None]
    assert shards(Axis(300), 0, 32) == [None]
    assert shards(Axis(300), 400, 32) == [None]  # one shard holds it all: not split
    parts = shards(Axis(300), 70, 32)  # rounded up to 96 images: whole batches
    assert [(s.start, s.stop) for s in parts] == [(0, 96), (96, 192), (192, 288), (288, 300)]
    assert {s.parts for s in parts} == {4} and [s.part for s in parts] == [0, 1, 2, 3]
    cells = shards(Axis(6, images=300, aligned=False), 700, 32)  # 2 cells of 300 images each
    assert [(s.start, s.stop) for s in cells] == [(0, 2), (2, 4), (4, 6)]


@pytest.mark.parametrize("size", ["40", "100"])
def test_split_units_store_the_unsplit_numbers(zoo, unsplit, size, one_thread):
    out = zoo.parent / f"shards-{size}"
    assert evaluate(zoo, out, "--suite", str(split_suite(zoo.parent)), "--limit", "300",
                    "--data-root", str(zoo.parent / "data"), "--shard-size", size) == 0
    pd.testing.assert_frame_equal(results(out), unsplit)
    assert not (out / "partial").exists() or not any((out / "partial").iterdir())


def test_ray_executor_stores_the_local_numbers(zoo, unsplit):
    ray = pytest.importorskip("ray")
    # the workers import the test architectures (`tinynets:`) as a user's would be: on the path
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    try:
        for size in ("0", "64"):
            out = zoo.parent / f"ray-{size}"
            assert evaluate(zoo, out, "--suite", str(split_suite(zoo.parent)), "--limit",
                            "300", "--data-root", str(zoo.parent / "data"), "--executor",
                            "ray", "--shard-size", size, "--threads", "1") == 0
            pd.testing.assert_frame_equal(results(out), unsplit)
        # a worker process that dies mid-job: Ray runs the job again elsewhere
        plugin = zoo.parent / "dies_once.py"
        plugin.write_text(DIES_ONCE.format(flag=str(zoo.parent / "died")))
        suite = zoo.parent / "dies.toml"
        suite.write_text(PROBE.replace("shard_probe", "dies_once"))
        out = zoo.parent / "ray-died"
        assert evaluate(zoo, out, "--suite", str(suite), "--limit", "300", "--executor", "ray",
                        "--plugin", str(plugin)) == 0
        assert (zoo.parent / "died").exists()  # a worker died, and the job was run again
        clean = unsplit[(unsplit["task"] == "clean") & (unsplit["metric"] == "top1_err")]
        np.testing.assert_allclose(sorted(results(out)["value"]), sorted(clean["value"]))
    finally:
        ray.shutdown()


# a plugin (imported by the driver and by every Ray worker): a task whose first job kills its
# worker process, as a crash or the out-of-memory killer would
DIES_ONCE = """
import os
from pathlib import Path

import numpy as np

from benchmark.records import Records
from benchmark.reductions import register_metric
from benchmark.stats import Metric
from benchmark.tasks import register_task

FLAG = Path({flag!r})


@register_task("dies_once")
def dies_once(ctx, params):
    if not FLAG.exists():
        FLAG.touch()
        os._exit(1)
    records = Records()
    records.add(index=np.arange(len(ctx.data)),
                correct=(ctx.clean_logits().argmax(1) == ctx.labels()).numpy())
    return records


@register_metric("dies_once", "err")
def err(records, params, seed):
    table = records.one()
    return [Metric("top1_err", 100.0 * float(1 - table["correct"].mean()), len(table), False)]
"""


# ------------------------------------------------------------ a shard that fails, then resumes

MEASURED: list[tuple[int, int]] = []  # the positions each shard of `shard_probe` measured
FAIL_PART: list[int] = []  # the shard part that raises


@register_task("shard_probe", axis=lambda params, n: Axis(n))
def _shard_probe(ctx: TaskContext, params: dict) -> Records:
    """Clean hits, recording which positions each shard measured."""
    part = ctx.part(len(ctx.data))
    MEASURED.append((part.start, part.stop))
    if ctx.shard is not None and ctx.shard.part in FAIL_PART:
        raise RuntimeError("simulated failure of one shard")
    positions = np.arange(len(ctx.data))[part]
    logits = ctx.clean_logits_at(positions)
    records = Records()
    records.add(index=positions, correct=(logits.argmax(1) == ctx.labels()[positions]).numpy())
    return records


@register_metric("shard_probe", "err")
def _probe_error(records: Records, params: dict, seed: int) -> list[Metric]:
    table = records.one()
    return [Metric("err", 100.0 * float(1 - table["correct"].mean()), len(table), False)]


PROBE = """name = "probe"
version = "1"
[dataset]
name = "digits"
[model_defaults]
num_classes = 10
[run]
batch_size = 100
[tasks.shard_probe]
"""


def test_a_failed_shard_is_retried_alone_and_the_merge_is_the_whole(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    make_zoo(zoo, seeds=(0,))
    suite = tmp_path / "probe.toml"
    suite.write_text(PROBE)
    flags = ("--suite", str(suite), "--shard-size", "200")  # 600 images: 3 shards
    MEASURED.clear()
    FAIL_PART[:] = [1]
    assert evaluate(zoo, tmp_path / "out", *flags) == 1
    assert "simulated failure of one shard" in capsys.readouterr().err
    assert sorted(MEASURED) == [(0, 200), (200, 400), (400, 600)]
    MEASURED.clear()
    FAIL_PART.clear()
    assert evaluate(zoo, tmp_path / "out", *flags) == 0
    assert MEASURED == [(200, 400)]  # the shards kept from the first run are not measured again
    assert evaluate(zoo, tmp_path / "whole", "--suite", str(suite)) == 0
    pd.testing.assert_frame_equal(results(tmp_path / "out"), results(tmp_path / "whole"))


# ------------------------------------------------------------------- out-of-memory back-off


class _Fits16(nn.Module):
    """A linear classifier whose 'device' holds at most 16 images per pass."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > 16:
            raise torch.OutOfMemoryError(f"simulated: {len(x)} images do not fit")
        return self.fc(x.flatten(1))


@register_arch("test_fits16")
def _fits16(num_classes: int = 10, **_: object) -> nn.Module:
    return _Fits16(num_classes)


def test_out_of_memory_halves_the_batch_and_records_the_size_that_fit(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "rubench.toml").write_text('arch = "test_fits16"\nnum_classes = 10\nmean = [0.3]\n'
                                      'std = [0.25]\n')
    torch.manual_seed(0)
    torch.save(_Fits16().state_dict(), zoo / "m.pth")
    suite = tmp_path / "probe.toml"
    suite.write_text(PROBE.replace("shard_probe", "clean"))
    assert evaluate(zoo, tmp_path / "auto", "--suite", str(suite), "--batch-size", "auto") == 0
    assert evaluate(zoo, tmp_path / "fixed", "--suite", str(suite), "--batch-size", "16") == 0
    auto, fixed = results(tmp_path / "auto"), results(tmp_path / "fixed")
    assert (auto["batch_size"] == 16).all()  # 1024 -> 512 -> ... -> 16
    pd.testing.assert_frame_equal(auto, fixed)


def test_only_accelerator_memory_errors_are_retried():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


# ------------------------------------------------------------------------------ channels_last


def test_channels_last_keeps_the_numbers_and_converts_conv_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 4)).eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        expected = net(x)
    converted = for_device(net, torch.device("cpu"), channels_last=True)
    assert converted[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), expected, rtol=1e-5, atol=1e-6)
    plain = nn.Linear(3, 2)  # no convolution: left as it is
    assert for_device(plain, torch.device("cpu"), channels_last=True) is plain
    # on the CPU nothing is converted unless asked
    net2 = nn.Conv2d(3, 4, 3)
    assert for_device(net2, torch.device("cpu")).weight.is_contiguous()


def test_a_shard_beyond_the_axis_is_refused():
    ctx = TaskContext(model=nn.Identity(), data=None, seed=0, device=torch.device("cpu"),
                      batch_size=1, shard=Shard(0, 10, 0, 1))
    assert ctx.part(10) == slice(0, 10)
    with pytest.raises(ValueError, match="beyond"):
        ctx.part(5)


def test_clean_logits_of_a_shard_are_the_shared_passs_rows(one_thread):
    from benchmark.datasets import read_digits

    data = read_digits(split="test")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    ctx = TaskContext(model=net, data=data, seed=0, device=torch.device("cpu"), batch_size=100)
    positions = np.arange(200, 300)
    alone = ctx.clean_logits_at(positions)  # a pass over those images only
    shared = predict(net, data, torch.device("cpu"), 100)[200:300]
    torch.testing.assert_close(alone, shared, rtol=0, atol=0)
    ctx.clean_logits()
    torch.testing.assert_close(ctx.clean_logits_at(positions), shared, rtol=0, atol=0)


def test_a_byte_identical_copy_reuses_the_units_of_the_first(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    make_zoo(zoo, seeds=(0,))
    (zoo / "m0copy.pth").write_bytes((zoo / "m0.pth").read_bytes())
    suite = tmp_path / "probe.toml"
    suite.write_text(PROBE.replace("shard_probe", "clean"))
    assert evaluate(zoo, tmp_path / "out", "--suite", str(suite), "--shard-size", "200") == 0
    assert "1 task result(s) computed, 1 reused" in capsys.readouterr().out
    rows = results(tmp_path / "out")
    assert sorted(set(rows["checkpoint"])) == ["m0", "m0copy"]


def test_out_of_memory_in_the_precision_guard_backs_off_too(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "rubench.toml").write_text('arch = "test_fits16"\nnum_classes = 10\nmean = [0.3]\n'
                                      'std = [0.25]\n')
    torch.save(_Fits16().state_dict(), zoo / "m.pth")
    suite = tmp_path / "probe.toml"
    suite.write_text(PROBE.replace("shard_probe", "clean"))
    assert evaluate(zoo, tmp_path / "out", "--suite", str(suite), "--batch-size", "auto",
                    "--precision", "bf16") == 0
    rows = results(tmp_path / "out")
    assert (rows["batch_size"] == 16).all() and (rows["precision"] == "bf16").all()


def test_a_copy_with_its_own_sidecar_is_loaded_with_its_own_normalization(tmp_path):
    zoo = tmp_path / "zoo"
    make_zoo(zoo, seeds=(0,))
    (zoo / "m0b.pth").write_bytes((zoo / "m0.pth").read_bytes())
    (zoo / "m0b.toml").write_text("mean = [0.6]\nstd = [0.1]\n")
    suite = tmp_path / "probe.toml"
    suite.write_text(PROBE.replace("shard_probe", "clean"))
    assert evaluate(zoo, tmp_path / "out", "--suite", str(suite)) == 0
    rows = results(tmp_path / "out").set_index(["checkpoint", "metric"])["value"]
    assert rows["m0", "nll"] != rows["m0b", "nll"]  # not the first file's loaded model
