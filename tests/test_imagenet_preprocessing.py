"""Per-checkpoint preprocessing on ImageNet val: a timm checkpoint is evaluated on the same
files read with timm's own Resize(floor(size / crop_pct)) -> CenterCrop(size) and interpolation,
a suite-default one keeps Resize(256) -> CenterCrop(224), bilinear; each has its own data
identity and its provenance names what was applied."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_imagenet_val
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from benchmark.archs import build_arch
from benchmark.archs.timm_models import timm_eval_preprocessing
from benchmark.cli import main
from benchmark.data import EvalData, Preprocessing
from benchmark.datasets import DATASETS
from benchmark.readers import IMAGENET_EVAL, read_imagenet_val
from benchmark.records import Records
from benchmark.reductions import register_metric
from benchmark.runner import data_identity
from benchmark.stats import Metric
from benchmark.suites import load_suite
from benchmark.tasks import register_task
from reports.leaderboard import provenance

timm = pytest.importorskip("timm")
WNIDS = ["n04592741", "n01440764", "n02102040"]
SUITE = """name = "imagenet3"
version = "1"
[dataset]
name = "imagenet"
split = "val"
[model_defaults]
num_classes = 3
input_size = [224, 224]
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
[run]
batch_size = 64
[tasks.clean]
[tasks.probe]
task = "seen_data_probe"
"""
SEEN: dict[str, tuple[str, torch.Tensor, np.ndarray]] = {}  # arch -> what its tasks received


@register_task("seen_data_probe")
def _probe(ctx, params):
    """Test task: keeps the data identity, images and labels a checkpoint's tasks receive."""
    images = torch.cat([x for x, _ in ctx.data.batches(64)]).cpu()
    SEEN[ctx.meta["arch"]] = (ctx.data_id, images, ctx.data.labels.copy())
    records = Records()
    records.add(index=np.arange(len(ctx.data)))
    return records


@register_metric("seen_data_probe", "n_seen")
def _n_seen(records, params, seed):
    return [Metric("n_seen", float(len(records.one())), len(records.one()), True)]


def reference(paths: list[Path], resize, crop: int, interpolation: InterpolationMode
              ) -> torch.Tensor:
    """torchvision's own Resize -> CenterCrop -> ToTensor of each file, stacked."""
    transform = transforms.Compose([transforms.Resize(resize, interpolation=interpolation),
                                    transforms.CenterCrop(crop), transforms.ToTensor()])
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(transform(image.convert("RGB")))
    return torch.stack(out)


def files_in_order(root: Path) -> list[Path]:
    """ImageNet val's item order: sorted class folders, sorted files within each."""
    return [path for wnid in sorted(WNIDS) for path in sorted((root / wnid).glob("*.JPEG"))]


@pytest.fixture
def three_classes(monkeypatch):
    """The ImageNet reader for a 3-class fixture tree (the real one wants 1,000 folders)."""
    monkeypatch.setitem(DATASETS, "imagenet", dataclasses.replace(
        DATASETS["imagenet"], reader=functools.partial(read_imagenet_val, num_classes=3)))
    SEEN.clear()


def test_another_preprocessing_reads_the_same_files_as_torchvision_would(tmp_path):
    root = write_imagenet_val(tmp_path, WNIDS, n_per_class=2, seed=3, size=300)
    data = read_imagenet_val(root, num_classes=3).subset(np.array([4, 1, 2]))
    assert data.preprocessing == IMAGENET_EVAL
    timms = Preprocessing.from_crop_fraction(160, 0.95, "bicubic")
    assert timms == Preprocessing(168, 160, "bicubic")  # floor(160 / 0.95)
    other = data.with_preprocessing(timms)
    assert other.preprocessing == timms and data.with_preprocessing(IMAGENET_EVAL) is data
    np.testing.assert_array_equal(other.labels, data.labels)
    files = [files_in_order(root)[i] for i in (4, 1, 2)]
    got = torch.stack([other.dataset[i][0] for i in range(3)])
    assert torch.equal(got, reference(files, 168, 160, InterpolationMode.BICUBIC))
    default = torch.stack([data.dataset[i][0] for i in range(3)])  # the original is untouched
    assert torch.equal(default, reference(files, 256, 224, InterpolationMode.BILINEAR))
    squash = data.with_preprocessing(Preprocessing(235, 224, "bilinear", squash=True))
    assert torch.equal(squash.dataset[0][0], reference(files[:1], (235, 235), 224,
                                                       InterpolationMode.BILINEAR)[0])
    assert timms.describe() == "Resize(168, bicubic) -> CenterCrop(160)"
    assert squash.preprocessing.describe() == "Resize(235x235, bilinear) -> CenterCrop(224)"
    assert IMAGENET_EVAL.describe() == "Resize(256, bilinear) -> CenterCrop(224)"
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'; known: nearest"):
        Preprocessing(168, 160, "cubic")
    arrays = EvalData(name="cifar10", labels=np.zeros(2, dtype=np.int64), num_classes=10,
                      source="x", images=torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="used as stored"):
        arrays.with_preprocessing(timms)


def test_timms_rule_matches_timms_own_eval_transform(tmp_path):
    root = write_imagenet_val(tmp_path, WNIDS[:1], n_per_class=2, seed=4, size=280)
    from timm.data.transforms_factory import transforms_imagenet_eval

    for crop_mode, size, crop_pct, interpolation in (("center", 160, 0.95, "bicubic"),
                                                     ("squash", 192, 1.0, "bilinear"),
                                                     ("center", 224, 0.9, "bilinear")):
        config = {"interpolation": interpolation, "crop_pct": crop_pct, "crop_mode": crop_mode}
        ours, note = timm_eval_preprocessing(config, [size, size])
        assert note is None
        theirs = transforms_imagenet_eval(img_size=size, crop_pct=crop_pct, crop_mode=crop_mode,
                                          interpolation=interpolation, normalize=False)
        for path in files_in_order(root):
            with Image.open(path) as image:
                expected = theirs(image.convert("RGB"))  # uint8, not scaled
                got = ours.transform()(image.convert("RGB"))
            assert torch.equal((got * 255).round().to(torch.uint8), expected)
    border = {"interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "border"}
    assert timm_eval_preprocessing(border, [224, 224]) == (
        None, "timm evaluates it with crop mode 'border', which rubench does not reproduce")
    assert timm_eval_preprocessing({**border, "crop_mode": "center"}, [224, 192])[0] is None
    with pytest.raises(ValueError, match="unknown interpolation 'random'"):
        timm_eval_preprocessing({**border, "interpolation": "random", "crop_mode": "center"},
                                [224, 224])


def test_data_identity_names_a_preprocessing_other_than_the_default(tmp_path):
    root = write_imagenet_val(tmp_path, WNIDS, n_per_class=1, seed=5, size=260)
    suite = load_suite("imagenet")
    data = read_imagenet_val(root, num_classes=3)
    default = data_identity(data, suite, 0, 0)
    other = data_identity(data.with_preprocessing(Preprocessing(168, 160, "bicubic")), suite, 0, 0)
    assert other != default
    assert data_identity(data.with_preprocessing(IMAGENET_EVAL), suite, 0, 0) == default
    assert data_identity(data.with_preprocessing(Preprocessing(168, 160, "bilinear")),
                         suite, 0, 0) not in (default, other)


def _zoo(zoo: Path) -> None:
    """A timm checkpoint (test_vit: input 160, bicubic, crop 0.95) and a suite-default one."""
    zoo.mkdir(parents=True)
    torch.manual_seed(0)
    save_file(timm.create_model("test_vit", num_classes=3).state_dict(), zoo / "vit.safetensors")
    (zoo / "vit.toml").write_text('arch = "timm:test_vit"\n')
    save_file(build_arch("tinynets:pooled_cnn", num_classes=3).state_dict(),
              zoo / "plain.safetensors")
    (zoo / "plain.toml").write_text('arch = "tinynets:pooled_cnn"\n')


def _evaluate(tmp_path: Path, *extra: str) -> int:
    suite = tmp_path / "imagenet3.toml"
    suite.write_text(SUITE)
    return main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
                 str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--no-progress",
                 *extra])


def test_a_timm_checkpoint_gets_timms_preprocessing_and_a_default_one_the_suites(
        tmp_path, capsys, three_classes):
    root = write_imagenet_val(tmp_path / "data" / "imagenet", WNIDS, n_per_class=2, seed=6,
                              size=300)
    _zoo(tmp_path / "zoo")
    assert _evaluate(tmp_path) == 0
    captured = capsys.readouterr()
    assert "may differ from timm's" not in captured.err  # applied: nothing to warn about
    files = files_in_order(root)
    labels = np.repeat(np.arange(3), 2)
    vit_id, vit_images, vit_labels = SEEN["timm:test_vit"]
    plain_id, plain_images, plain_labels = SEEN["tinynets:pooled_cnn"]
    assert torch.equal(vit_images, reference(files, int(160 / 0.95), 160,
                                             InterpolationMode.BICUBIC))
    assert torch.equal(plain_images, reference(files, 256, 224, InterpolationMode.BILINEAR))
    np.testing.assert_array_equal(vit_labels, labels)
    np.testing.assert_array_equal(plain_labels, labels)
    assert vit_id != plain_id
    suite = load_suite(str(tmp_path / "imagenet3.toml"))
    assert plain_id == data_identity(read_imagenet_val(root, num_classes=3), suite, 0, 0)

    results = pd.read_csv(tmp_path / "out" / "results.csv").set_index("checkpoint")
    assert set(results.loc["vit", "preprocessing"]) == {"Resize(168, bicubic) -> CenterCrop(160)"}
    assert set(results.loc["plain", "preprocessing"]) == {
        "Resize(256, bilinear) -> CenterCrop(224)"}
    assert set(results.loc["vit", "timm_preprocessing"]) == {"bicubic, crop 0.95"}
    assert results.loc["plain", "timm_preprocessing"].isna().all()
    assert ("Preprocessing: Resize(168, bicubic) -> CenterCrop(160), Resize(256, bilinear) -> "
            "CenterCrop(224).") in provenance(results.reset_index())

    # a second run keys every unit the same way (the timm checkpoint is loaded first to know
    # its preprocessing): nothing is recomputed
    SEEN.clear()
    assert _evaluate(tmp_path) == 0
    assert "0 task result(s) computed, 4 reused" in capsys.readouterr().out
    assert SEEN == {}


def test_timm_preprocessing_rubench_cannot_apply_is_noted_or_refused(
        tmp_path, capsys, monkeypatch, three_classes):
    import benchmark.checkpoints as checkpoints

    write_imagenet_val(tmp_path / "data" / "imagenet", WNIDS, n_per_class=1, seed=7, size=260)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    torch.manual_seed(0)
    save_file(timm.create_model("test_resnet", num_classes=3).state_dict(),
              zoo / "net.safetensors")
    (zoo / "net.toml").write_text('arch = "timm:test_resnet"\ninput_size = 224\n')
    config = checkpoints.timm_config
    for change in ({"crop_mode": "border"}, {"interpolation": "cubic"}):
        monkeypatch.setattr(checkpoints, "timm_config",
                            lambda name, change=change: {**config(name), **change})
        code = _evaluate(tmp_path, "--tasks", "clean")
        err = capsys.readouterr().err
        if "crop_mode" in change:  # evaluated with the suite's preprocessing, and says so
            assert code == 0
            assert ("timm:test_resnet: timm evaluates it with crop mode 'border', which rubench "
                    "does not reproduce; evaluated with the suite's Resize(256, bilinear) -> "
                    "CenterCrop(224)") in err
            results = pd.read_csv(tmp_path / "out" / "results.csv")
            assert set(results.preprocessing) == {"Resize(256, bilinear) -> CenterCrop(224)"}
        else:  # an interpolation rubench cannot name fails that checkpoint, clearly
            assert code == 1
            assert "timm:test_resnet: timm's evaluation preprocessing: unknown interpolation " \
                   "'cubic'; known: nearest, nearest-exact, bilinear, bicubic" in err
