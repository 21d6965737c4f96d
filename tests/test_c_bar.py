"""CIFAR-10-C-Bar and ImageNet-C-Bar read by task `corruptions`, end to end through the CLI: cell
errors from the model's own outputs on the fixture files, the `c_bar` category mean, no -C means
or mCE, `generate` refused, the authors' parameter-named severity folders refused."""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_cifar10, write_imagenet_val
from fixtures_corruptions import cifar_test_images
from PIL import Image
from test_corruptions_task import MEAN, STD, _predict

from benchmark.archs import build_arch
from benchmark.cli import main
from benchmark.datasets import DATASETS
from benchmark.readers import read_imagenet_val
from corruptions.catalog import (
    ALL,
    C_BAR,
    C_BAR_SETS,
    IMAGENET_C_BAR_PARAMETERS,
    SEVERITIES,
    c_bar_set,
    category_of,
    select,
)

TINY32 = "tinynets:tiny_cnn32"
TINY224 = "test_c_bar:tiny_cnn224"
CIFAR_BAR = C_BAR_SETS["cifar10_c_bar"]
IMAGENET_BAR = C_BAR_SETS["imagenet_c_bar"]
WNIDS = ["n04592741", "n01440764", "n02102040"]
NOT_FOR_C_BAR = {"mean_corruption_err", "mean_corruption_err_sum", "mce", "relative_mce"}


def tiny_cnn224(num_classes: int = 3) -> torch.nn.Module:
    """A tiny CNN for 224x224 RGB images (importable as `test_c_bar:tiny_cnn224`)."""
    from tinynets import tiny_cnn

    return tiny_cnn(num_classes, in_channels=3, side=224)


def _zoo(folder: Path, arch: str, num_classes: int) -> dict:
    """One checkpoint `m0` of `arch` (seed 0) with its rubench.toml; returns its state dict."""
    folder.mkdir(parents=True)
    (folder / "rubench.toml").write_text(
        f'arch = "{arch}"\nnum_classes = {num_classes}\nmean = [{MEAN}, {MEAN}, {MEAN}]\n'
        f"std = [{STD}, {STD}, {STD}]\n")
    torch.manual_seed(0)
    state = build_arch(arch, num_classes=num_classes).state_dict()
    torch.save(state, folder / "m0.pth")
    return state


def _suite(path: Path, dataset: str, size: int, num_classes: int, table: str) -> Path:
    split = "val" if dataset == "imagenet" else "test"
    path.write_text(f'name = "t"\nversion = "1"\n[dataset]\nname = "{dataset}"\nsplit = '
                    f'"{split}"\n[model_defaults]\nnum_classes = {num_classes}\n'
                    f"input_size = [{size}, {size}]\n[run]\nbatch_size = 64\n"
                    f'[tasks.corruptions_bar]\ntask = "corruptions"\n{table}')
    return path


def _evaluate(tmp_path: Path, data_root: Path, suite: Path, out: str, *extra: str) -> int:
    return main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
                 str(data_root), "--out", str(tmp_path / out), "--no-progress", *extra])


def _write_npy_c_bar(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """CIFAR-10-C-Bar as released: `<corruption>.npy` uint8 (5 N, 32, 32, 3), severity s in rows
    [(s-1) N, s N) in test order, and `labels.npy` (int64, tiled 5 times). Stand-in content:
    seeded uniform noise of 20 s grey levels, its seed from (corruption, severity)."""
    folder.mkdir(parents=True)
    for corruption in CIFAR_BAR:
        blocks = []
        for s in SEVERITIES:
            rng = np.random.default_rng([C_BAR.index(corruption), s])
            noise = rng.uniform(-20 * s, 20 * s, images.shape)
            blocks.append(np.clip(images + noise, 0, 255).astype(np.uint8))
        np.save(folder / f"{corruption}.npy", np.concatenate(blocks))
    np.save(folder / "labels.npy", np.tile(labels.astype(np.int64), len(SEVERITIES)))
    return folder


def _write_tree_c_bar(folder: Path, n_per_class: int = 2) -> Path:
    """ImageNet-C-Bar as released: `<corruption>/<1..5>/<wnid>/*.JPEG`, 224x224, saved as the
    authors' script saves (quality 85). Stand-in content: noise around a seeded grey level per
    image, so a tiny model's predictions differ from cell to cell."""
    rng = np.random.default_rng(0)
    for corruption in IMAGENET_BAR:
        for s in SEVERITIES:
            for wnid in WNIDS:
                (folder / corruption / str(s) / wnid).mkdir(parents=True)
                for k in range(n_per_class):
                    level = rng.uniform(20, 235, 3)
                    pixels = np.clip(level + rng.normal(0, 25, (224, 224, 3)), 0, 255)
                    Image.fromarray(pixels.astype(np.uint8)).save(
                        folder / corruption / str(s) / wnid / f"{wnid}_{k}.JPEG", quality=85)
    return folder


@pytest.fixture
def cifar_bar(tmp_path: Path) -> tuple[Path, dict, np.ndarray]:
    """A 40-image CIFAR-10 test set, its CIFAR-10-C-Bar (default folder), one tiny model."""
    data_root = tmp_path / "data"
    cifar = write_cifar10(data_root, n_train_per_batch=2, n_test=40, seed=5)
    images, labels = cifar_test_images(cifar)
    _write_npy_c_bar(data_root / "CIFAR-10-C-Bar", images, labels)
    return data_root, _zoo(tmp_path / "zoo", TINY32, 10), labels


def test_catalog_keeps_c_bar_out_of_the_c_groups() -> None:
    assert len(CIFAR_BAR) == len(IMAGENET_BAR) == 10 and len(C_BAR) == 15  # five shared
    assert not set(C_BAR) & set(ALL)
    for group in ("all", "benchmark", "extra"):
        assert not set(select(group)) & set(C_BAR)
    assert select("imagenet_c_bar", c_bar=True) == list(IMAGENET_BAR)  # the csv's order
    assert select(["ripple", "fog", "lines"], c_bar=True) == ["fog", "ripple", "lines"]
    assert {category_of(c) for c in C_BAR} == {"c_bar"}
    assert select(["ripple", "fog"], ["weather"], c_bar=True) == ["fog"]
    assert c_bar_set([*CIFAR_BAR, "fog"]) == CIFAR_BAR and c_bar_set(CIFAR_BAR[1:]) == ()
    with pytest.raises(ValueError, match="no generator for the -C-bar corruptions \\(ripple\\)"):
        select(["ripple", "fog"])  # generators' default: rubench corrupt never makes them


def test_cifar10_c_bar_cells_category_and_no_c_means(tmp_path: Path, cifar_bar) -> None:
    data_root, state, labels = cifar_bar
    suite = _suite(tmp_path / "s.toml", "cifar10", 32, 10, 'corruptions = "cifar10_c_bar"\n')
    assert _evaluate(tmp_path, data_root, suite, "out") == 0
    rows = pd.read_csv(tmp_path / "out" / "results.csv")
    rows = rows[rows.task == "corruptions_bar"]
    assert set(rows.source) == {"released"}
    cells = rows[rows.metric == "top1_err"]
    expected, wrong = {}, {}
    for corruption in CIFAR_BAR:
        array = np.load(data_root / "CIFAR-10-C-Bar" / f"{corruption}.npy")  # no memory map
        for s in SEVERITIES:
            wrong[corruption, s] = _predict(state, TINY32, 10,
                                            array[(s - 1) * 40:s * 40]) != labels
            expected[corruption, s] = 100 * wrong[corruption, s].mean()
    got = {(r.corruption, int(r.severity)): r.value for r in cells.itertuples()}
    assert got == pytest.approx(expected) and (cells.n == 40).all()
    assert len({round(v, 6) for v in expected.values()}) > 1  # the cells do differ
    assert set(cells.category) == {"c_bar"}
    per_c = {c: np.mean([expected[c, s] for s in SEVERITIES]) for c in CIFAR_BAR}
    category = rows[rows.metric == "category_err"]
    assert list(category.category) == ["c_bar"]  # no -C category
    bar = category.iloc[0]
    assert bar.value == pytest.approx(np.mean(list(per_c.values())), rel=1e-12)
    assert bar.n == 40 and bar.ci_low <= bar.value <= bar.ci_high  # same 40 images throughout
    at3 = rows[(rows.metric == "severity_err") & (rows.severity == 3)]
    assert list(at3.category) == ["c_bar"]  # no panel of the 15
    assert at3.value.iloc[0] == pytest.approx(np.mean([expected[c, 3] for c in CIFAR_BAR]))
    assert not NOT_FOR_C_BAR & set(rows.metric)
    # sharded by cells (about 400 images = 10 cells a shard): the same rows
    assert _evaluate(tmp_path, data_root, suite, "sharded", "--shard-size", "400") == 0
    sharded = pd.read_csv(tmp_path / "sharded" / "results.csv")
    columns = ["metric", "corruption", "severity", "category", "value", "n", "ci_low",
               "ci_high"]
    key = ["metric", "corruption", "severity", "category"]
    pd.testing.assert_frame_equal(
        sharded[sharded.task == "corruptions_bar"][columns].sort_values(key, ignore_index=True),
        rows[columns].sort_values(key, ignore_index=True))


def test_generate_is_refused_and_a_missing_set_named(tmp_path: Path, cifar_bar, capsys) -> None:
    data_root, _, _ = cifar_bar
    table = 'corruptions = "cifar10_c_bar"\ngenerate = true\npath = "mine"\n'
    suite = _suite(tmp_path / "s.toml", "cifar10", 32, 10, table)
    assert _evaluate(tmp_path, data_root, suite, "out") == 2  # refused as the suite loads
    assert "rubench has no generator for the -C-bar corruptions" in capsys.readouterr().err
    assert not (data_root / "mine").exists() and not (tmp_path / "out").exists()
    assert main(["corrupt", "--dataset", "cifar10", "--out", str(tmp_path / "gen"),
                 "--data-root", str(data_root), "--corruptions", "ripple,fog",
                 "--no-progress"]) != 0
    assert "no generator for the -C-bar corruptions (ripple)" in capsys.readouterr().err
    assert not (tmp_path / "gen" / "CIFAR-10-C").exists()
    (data_root / "CIFAR-10-C-Bar").rename(data_root / "elsewhere")
    suite = _suite(tmp_path / "s.toml", "cifar10", 32, 10, 'corruptions = ["ripple"]\n')
    assert _evaluate(tmp_path, data_root, suite, "out") == 1
    assert re.search(r"CIFAR-10-C-Bar: folder not found.*extract the released CIFAR-10-C-Bar "
                     "archive there", capsys.readouterr().err)


def test_imagenet_c_bar_tree_and_parameter_named_severities(tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    monkeypatch.setitem(DATASETS, "imagenet", dataclasses.replace(  # 3 classes, not 1,000
        DATASETS["imagenet"], reader=functools.partial(read_imagenet_val, num_classes=3)))
    data_root = tmp_path / "data"
    write_imagenet_val(data_root / "imagenet", WNIDS, n_per_class=2)  # 6 = a cell's images
    root = _write_tree_c_bar(data_root / "sets" / "ImageNet-C-Bar")
    state = _zoo(tmp_path / "zoo", TINY224, 3)
    table = 'corruptions = "imagenet_c_bar"\npath = "sets/ImageNet-C-Bar"\n'
    suite = _suite(tmp_path / "s.toml", "imagenet", 224, 3, table)
    # ImageNet, released, all five severities: what makes ImageNet-C report mCE
    assert _evaluate(tmp_path, data_root, suite, "out") == 0
    rows = pd.read_csv(tmp_path / "out" / "results.csv")
    cells = rows[rows.metric == "top1_err"]
    labels = np.repeat(np.arange(3), 2)  # label = position of the wnid among the sorted ones
    expected = {}
    for corruption in IMAGENET_BAR:
        for s in SEVERITIES:
            paths = [p for w in sorted(WNIDS) for p in sorted((root / corruption / str(s) / w)
                                                              .iterdir())]
            images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
            predicted = _predict(state, TINY224, 3, images)
            expected[corruption, s] = 100 * float(np.mean(predicted != labels))
    got = {(r.corruption, int(r.severity)): r.value for r in cells.itertuples()}
    assert got == pytest.approx(expected) and (cells.n == 6).all()
    assert len(set(expected.values())) > 2  # the cells do differ
    assert set(cells.category) == {"c_bar"}
    bar = rows[rows.metric == "category_err"]
    assert list(bar.category) == ["c_bar"]
    assert bar.value.iloc[0] == pytest.approx(np.mean(list(expected.values())))
    assert not NOT_FOR_C_BAR & set(rows.metric)
    # the authors' make_imagenet_c_bar.py names severity folders by parameter: refused, with
    # the renames spelled out
    for s, parameter in zip(SEVERITIES, IMAGENET_C_BAR_PARAMETERS["plasma_noise"], strict=True):
        (root / "plasma_noise" / str(s)).rename(root / "plasma_noise" / f"{parameter:.2f}")
    assert (root / "plasma_noise" / "4.75").is_dir() and (root / "plasma_noise" / "9.25").is_dir()
    assert _evaluate(tmp_path, data_root, suite, "out2") == 1
    err = capsys.readouterr().err
    assert "severity folders named by the corruption's parameter" in err
    assert ("plasma_noise/{4.75,7.00,8.50,9.25,10.00} -> plasma_noise/{1,2,3,4,5}" in err)
