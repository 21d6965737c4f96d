"""Task `corruptions` end to end through the CLI: numbers, --limit subsets, errors naming files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_cifar10, write_tinyimagenet
from fixtures_corruptions import cifar_test_images, write_npy_c, write_tree_c
from sklearn.metrics import accuracy_score

import benchmark.tasks.corruptions  # noqa: F401  (registers the task)
from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.cli import main
from benchmark.data import EvalData, stratified_subset
from benchmark.records import Records, concat
from benchmark.reductions.corruptions import Cell, summarize
from benchmark.stats import wilson_interval
from benchmark.tasks import get_task, resolve_params
from benchmark.tasks.registry import TaskContext
from corruptions.catalog import ALEXNET_ERR, ALL, BENCHMARK, CATEGORIES, CATEGORY_OF

TINY32 = "tinynets:tiny_cnn32"
MEAN, STD = 0.45, 0.25


def _zoo(folder: Path, arch: str, num_classes: int, seeds=(0,)) -> dict[str, dict]:
    folder.mkdir(parents=True)
    (folder / "rubench.toml").write_text(
        f'arch = "{arch}"\nnum_classes = {num_classes}\nmean = [{MEAN}, {MEAN}, {MEAN}]\n'
        f"std = [{STD}, {STD}, {STD}]\n")
    states = {}
    for seed in seeds:
        torch.manual_seed(seed)
        states[f"m{seed}"] = build_arch(arch, num_classes=num_classes).state_dict()
        torch.save(states[f"m{seed}"], folder / f"m{seed}.pth")
    return states


def _suite(path: Path, dataset: str, task_table: str, num_classes: int, size: int) -> Path:
    path.write_text(f'name = "t"\nversion = "1"\n[dataset]\nname = "{dataset}"\nsplit = '
                    f'"{"val" if dataset == "tinyimagenet" else "test"}"\n[model_defaults]\n'
                    f"num_classes = {num_classes}\ninput_size = [{size}, {size}]\n[run]\n"
                    f"batch_size = 16\n[tasks.clean]\n[tasks.corruptions]\n{task_table}")
    return path


def _predict(state: dict, arch: str, num_classes: int, images_nhwc: np.ndarray) -> np.ndarray:
    net = build_arch(arch, num_classes=num_classes)
    net.load_state_dict(state)
    x = torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    with torch.no_grad():
        return net.eval()((x - MEAN) / STD).argmax(1).numpy()


def make_cifar_c(tmp_path: Path) -> tuple[Path, dict[str, dict], np.ndarray]:
    """A CIFAR-10 fixture with a released-layout CIFAR-10-C and two tiny models."""
    data_root = tmp_path / "data"
    cifar = write_cifar10(data_root, n_train_per_batch=2, n_test=40, seed=3)
    images, labels = cifar_test_images(cifar)
    write_npy_c(data_root, "CIFAR-10-C", images, labels)
    states = _zoo(tmp_path / "zoo", TINY32, 10, seeds=(0, 1))
    return data_root, states, labels


@pytest.fixture
def cifar_c(tmp_path: Path):
    return make_cifar_c(tmp_path)


def _normal_interval(shares: np.ndarray) -> tuple[float, float]:
    """mean +- 1.96 sd / sqrt(n) of per-image shares, in percent: what an image bootstrap of
    their mean approaches."""
    half = 1.96 * shares.std() / np.sqrt(len(shares))
    return 100 * (shares.mean() - half), 100 * (shares.mean() + half)


def _run(tmp_path: Path, data_root: Path, suite: Path, *extra: str) -> int:
    return main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
                 str(data_root), "--out", str(tmp_path / "out"), "--no-progress", *extra])


def test_cifar_c_numbers_match_independent_forward_passes(tmp_path: Path, cifar_c) -> None:
    data_root, states, labels = cifar_c
    suite = _suite(tmp_path / "s.toml", "cifar10", "", 10, 32)
    assert _run(tmp_path, data_root, suite) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    rows = results[results.task == "corruptions"]
    assert set(rows.source) == {"released"}
    for name, state in states.items():
        mine = rows[rows.checkpoint == name]
        cells = mine[mine.metric == "top1_err"]
        assert len(cells) == 19 * 5
        expected, wrong = {}, {}
        for corruption in ALL:
            array = np.load(data_root / "CIFAR-10-C" / f"{corruption}.npy")  # no memory map
            for s in range(1, 6):
                predicted = _predict(state, TINY32, 10, array[(s - 1) * 40:s * 40])
                expected[corruption, s] = 100 * (1 - accuracy_score(labels, predicted))
                wrong[corruption, s] = predicted != labels
        got = {(r.corruption, int(r.severity)): r.value for r in cells.itertuples()}
        assert got == pytest.approx(expected)
        assert set(cells.category) == set(CATEGORY_OF.values())
        assert (cells.n == 40).all()
        for r in cells.itertuples():  # Wilson interval of each cell's count
            low, high = wilson_interval(int(wrong[r.corruption, int(r.severity)].sum()), 40)
            assert (r.ci_low, r.ci_high) == pytest.approx((100 * low, 100 * high))
        per_c = mine[mine.metric == "corruption_err"].set_index("corruption")
        fog = per_c.loc["fog"]
        assert fog.value == pytest.approx(np.mean([expected["fog", s] for s in range(1, 6)]),
                                          rel=1e-12)
        # same 40 images in every cell: a bootstrap over them of each image's share of the
        # severities it fails, close to the normal approximation
        shares = np.mean([wrong["fog", s] for s in range(1, 6)], axis=0)
        half = (fog.ci_high - fog.ci_low) / 2
        assert fog.n == 40 and fog.ci_low <= fog.value <= fog.ci_high
        assert (fog.ci_low, fog.ci_high) == pytest.approx(_normal_interval(shares),
                                                          abs=0.3 * half)
        sums = mine[mine.metric == "corruption_err_sum"].set_index("corruption")
        assert sums.value["snow"] == pytest.approx(sum(expected["snow", s] for s in range(1, 6)))
        assert sums.loc["fog", ["ci_low", "ci_high"]].tolist() == pytest.approx(
            [5 * fog.ci_low, 5 * fog.ci_high])  # a sum over 5 severities = 5 x their mean
        mean15 = mine[mine.metric == "mean_corruption_err"].iloc[0]
        assert mean15.value == pytest.approx(np.mean([per_c.value[c] for c in BENCHMARK]),
                                             rel=1e-12)
        shares = np.mean([wrong[c, s] for c in BENCHMARK for s in range(1, 6)], axis=0)
        half = (mean15.ci_high - mean15.ci_low) / 2
        assert (mean15.ci_low, mean15.ci_high) == pytest.approx(_normal_interval(shares),
                                                                abs=0.3 * half)
        assert mine[mine.metric != "top1_err"].ci_low.notna().all()
        per_c = per_c.value
        cats = mine[mine.metric == "category_err"].set_index("category").value
        assert cats["blur"] == pytest.approx(np.mean([per_c[c] for c in
                                                      ("defocus_blur", "glass_blur",
                                                       "motion_blur", "zoom_blur")]))
        assert "mce" not in set(mine.metric)  # AlexNet normalization is ImageNet-C only


def test_limit_takes_the_clean_subsets_test_indices_at_every_severity(tmp_path: Path,
                                                                      cifar_c) -> None:
    data_root, states, labels = cifar_c
    table = 'corruptions = ["fog", "contrast"]\nseverities = [2, 5]\n'
    suite = _suite(tmp_path / "s.toml", "cifar10", table, 10, 32)
    assert _run(tmp_path, data_root, suite, "--limit", "20", "--seed", "7") == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    cells = results[(results.metric == "top1_err") & (results.task == "corruptions")
                    & (results.checkpoint == "m0")]
    assert sorted(zip(cells.corruption, cells.severity, strict=True)) == [
        ("contrast", 2), ("contrast", 5), ("fog", 2), ("fog", 5)]
    keep = stratified_subset(labels, 20, 7)  # the runner's clean subset: same rows everywhere
    for r in cells.itertuples():
        array = np.load(data_root / "CIFAR-10-C" / f"{r.corruption}.npy")
        rows = array[(int(r.severity) - 1) * 40 + keep]
        predicted = _predict(states["m0"], TINY32, 10, rows)
        assert r.value == pytest.approx(100 * (1 - accuracy_score(labels[keep], predicted)))
        assert r.n == 20
    # only fog and contrast at two severities: no category or 15-corruption summary
    assert not {"category_err", "mean_corruption_err"} & set(results.metric)


@pytest.mark.parametrize("damage, message", [
    ("missing", r"CIFAR-10-C/fog\.npy: file not found"),
    ("labels", r"CIFAR-10-C/labels\.npy: labels disagree with the evaluated data set's"),
    ("folder", r"CIFAR-10-C: folder not found.*extract the released CIFAR-10-C archive"),
])
def test_bad_set_fails_the_task_only_naming_the_file(tmp_path: Path, cifar_c, capsys,
                                                     damage: str, message: str) -> None:
    data_root, _, labels = cifar_c
    folder = data_root / "CIFAR-10-C"
    if damage == "missing":
        (folder / "fog.npy").unlink()
    elif damage == "labels":
        np.save(folder / "labels.npy", np.tile((labels + 1) % 10, 5))
    else:
        folder.rename(data_root / "elsewhere")
    suite = _suite(tmp_path / "s.toml", "cifar10", 'corruptions = ["snow", "fog"]\n', 10, 32)
    assert _run(tmp_path, data_root, suite) == 1
    assert len(pytest.importorskip("re").findall(message, capsys.readouterr().err)) == 2
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results.task) == {"clean"}  # the other task of each checkpoint went on


def test_bad_parameters_are_named(tmp_path: Path, cifar_c, capsys) -> None:
    data_root, _, _ = cifar_c
    """Refused when the suite loads (exit 2), before any checkpoint is read."""
    suite = _suite(tmp_path / "s.toml", "cifar10", 'corruptions = ["rain"]\n', 10, 32)
    assert _run(tmp_path, data_root, suite) == 2
    assert "corruptions: unknown name(s) ['rain']" in capsys.readouterr().err
    suite = _suite(tmp_path / "s.toml", "cifar10", "severities = [0, 6]\n", 10, 32)
    assert _run(tmp_path, data_root, suite) == 2
    assert "'severities' must be a non-empty list of distinct values among 1, 2, 3, 4, 5" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def tiny_cnn64(num_classes: int = 4) -> torch.nn.Module:
    """A tiny CNN for 64x64 RGB images (importable as `test_corruptions_task:tiny_cnn64`)."""
    from tinynets import tiny_cnn

    return tiny_cnn(num_classes, in_channels=3, side=64)


def test_tiny_imagenet_c_tree_with_frost_defect_and_limit(tmp_path: Path, capsys) -> None:
    wnids = ["n09999999", "n01443537", "n04067472", "n02123045"]
    data_root = tmp_path / "data"
    write_tinyimagenet(data_root, wnids, n_per_class=3)
    root = write_tree_c(data_root, "Tiny-ImageNet-C", wnids, n_per_class=3, size=64,
                        corruptions=("frost", "fog"), severities=(1, 3),
                        defect_wnids=("n00000001", "n00000002"))
    states = _zoo(tmp_path / "zoo", "test_corruptions_task:tiny_cnn64", 4)
    table = 'corruptions = ["frost", "fog"]\nseverities = [1, 3]\n'
    suite = _suite(tmp_path / "s.toml", "tinyimagenet", table, 4, 64)
    assert _run(tmp_path, data_root, suite, "--limit", "8") == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    cells = results[results.metric == "top1_err"].dropna(subset=["corruption"])
    classes = sorted(wnids)  # label = position in the sorted wnids.txt
    from PIL import Image

    for r in cells.itertuples():
        folder = root / r.corruption / str(int(r.severity))
        paths = [p for wnid in classes for p in sorted((folder / wnid).iterdir())]
        labels = np.repeat(np.arange(4), 3)
        keep = stratified_subset(labels, 8, 0)
        images = np.stack([np.asarray(Image.open(paths[i]).convert("RGB")) for i in keep])
        predicted = _predict(states["m0"], "test_corruptions_task:tiny_cnn64", 4, images)
        assert r.value == pytest.approx(100 * (1 - accuracy_score(labels[keep], predicted)))
        assert r.n == 8
    # every cell holds the same <wnid>/<file> names: summaries bootstrap the 8 images
    summaries = results[results.metric == "corruption_err"].set_index("corruption")
    assert summaries.ci_low.notna().all() and (summaries.n == 8).all()
    # one fog file renamed: fog's cells no longer hold the same images, frost's still do
    first = sorted((root / "fog" / "1" / classes[0]).iterdir())[0]
    first.rename(first.with_name("renamed.JPEG"))
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
                 str(data_root), "--out", str(tmp_path / "out3"), "--no-progress",
                 "--limit", "8"]) == 0
    again = pd.read_csv(tmp_path / "out3" / "results.csv")
    again = again[again.metric == "corruption_err"].set_index("corruption")
    assert np.isnan(again.ci_low["fog"]) and again.n["fog"] == 16
    assert again.ci_low["frost"] == summaries.ci_low["frost"]
    # an unreadable JPEG fails the task with an error naming it (read lazily, during predict)
    broken = sorted((root / "fog" / "3" / classes[0]).iterdir())[0]
    broken.write_bytes(b"not a jpeg")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
                 str(data_root), "--out", str(tmp_path / "out2"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{broken}: unreadable image" in err and "Traceback" not in err


def test_imagenet_c_summary_reports_alexnet_mce_and_relative_mce() -> None:
    # E(f, c, s) = half of AlexNet's mean error at every severity, to 0.1 % (1000 images):
    # mCE 50 to 0.1 (hand-computed); clean error 10 %.
    n = 1000
    error = {c: round(500 * ALEXNET_ERR[c]) / n for c in ALL}  # a fraction of the n images
    cells = {(c, s): Cell(np.arange(n) < error[c] * n, 0) for c in ALL for s in range(1, 6)}
    out = {m.metric: m for m in summarize(cells, "released", [1, 2, 3, 4, 5], seed=0,
                                          clean_err=10.0)}
    assert out["mce"].value == pytest.approx(50.0, abs=0.1)
    assert out["mce"].value == pytest.approx(100 * np.mean([error[c] / ALEXNET_ERR[c]
                                                            for c in BENCHMARK]))
    expected_rel = 100 * np.mean([(100 * error[c] - 10) / (100 * ALEXNET_ERR[c] - 43.45)
                                  for c in BENCHMARK])
    assert out["relative_mce"].value == pytest.approx(expected_rel)
    assert out["mce"].n == out["mean_corruption_err"].n == n  # images
    assert out["mce"].ci_low is None and out["relative_mce"].ci_low is None


def test_summaries_bootstrap_images_and_drop_the_interval_when_cells_differ() -> None:
    # 3000 images, 2 severities; an image's difficulty is shared by every cell and its
    # per-corruption noise by both severities: cells are correlated, as in real sets
    n, rng = 3000, np.random.default_rng(0)
    difficulty = rng.uniform(0, 1, n)
    noise = {c: rng.normal(0, 0.3, n) for c in BENCHMARK}
    cells = {(c, s): Cell(difficulty + noise[c] > 1.2 - 0.2 * s, 0)
             for c in BENCHMARK for s in (1, 2)}
    out = summarize(cells, "released", [1, 2], seed=0)
    rows = {(m.metric, m.conditions.get("corruption", m.conditions.get("category"))): m
            for m in out}
    rate = {key: 100 * cell.wrong.mean() for key, cell in cells.items()}
    checks = [("corruption_err", "fog", [("fog", 1), ("fog", 2)]),
              ("category_err", "noise", [(c, s) for c in CATEGORIES["noise"] for s in (1, 2)]),
              ("mean_corruption_err", None, list(cells))]
    for metric, where, keys in checks:
        row = rows[metric, where]
        assert row.value == pytest.approx(np.mean([rate[k] for k in keys]), rel=1e-12)
        shares = np.mean([cells[k].wrong for k in keys], axis=0)
        half = (row.ci_high - row.ci_low) / 2
        assert row.n == n
        assert (row.ci_low, row.ci_high) == pytest.approx(_normal_interval(shares),
                                                          abs=0.15 * half)
        # a Wilson interval on the pooled count would ignore the correlation: too narrow
        low, high = wilson_interval(int(sum(cells[k].wrong.sum() for k in keys)), n * len(keys))
        assert 100 * (high - low) / 2 < 0.9 * half
    fog_sum = rows["corruption_err_sum", "fog"]
    fog = rows["corruption_err", "fog"]
    assert (fog_sum.value, fog_sum.ci_low, fog_sum.ci_high) == pytest.approx(
        (2 * fog.value, 2 * fog.ci_low, 2 * fog.ci_high))
    # one fog cell measured on other images: no interval for what averages it, rest unchanged
    cells["fog", 2] = Cell(cells["fog", 2].wrong[: n - 1], 1)
    again = {(m.metric, m.conditions.get("corruption", m.conditions.get("category"))): m
             for m in summarize(cells, "released", [1, 2], seed=0)}
    for key in [("corruption_err", "fog"), ("corruption_err_sum", "fog"),
                ("category_err", "weather"), ("mean_corruption_err", None)]:
        assert again[key].ci_low is None and again[key].ci_high is None, key
    assert again["corruption_err", "fog"].value == pytest.approx(
        (rate["fog", 1] + 100 * cells["fog", 2].wrong.mean()) / 2)
    assert again["corruption_err", "fog"].n == 2 * n - 1
    assert again["category_err", "noise"] == rows["category_err", "noise"]


def _halves(records: Records) -> Records:
    """The records split by index parity into two shards, merged back."""
    return concat(Records([t.take(t["index"] % 2 == parity) for t in records], dict(records.facts))
                  for parity in (0, 1))


def _measure(data: EvalData, model: torch.nn.Module, data_root: Path, seed: int = 0,
             **params) -> tuple[Records, list, dict]:
    """The task run as the runner runs it; checks its records re-reduce to its rows, whole,
    through encode / decode, and as two merged shards."""
    task = get_task("corruptions")
    params = resolve_params(task, params, "test suite")
    ctx = TaskContext(model=model.eval(), data=data, seed=seed, device=torch.device("cpu"),
                      batch_size=16, progress=False, data_root=data_root)
    records, metrics = task.run(ctx, params)
    assert task.reduce(Records.decode(records.encode()), params, seed) == metrics
    assert task.reduce(_halves(records), params, seed) == metrics
    return records, metrics, params


def test_records_hold_one_table_per_cell_and_re_reduce(tmp_path: Path, cifar_c) -> None:
    data_root, states, labels = cifar_c
    images, _ = cifar_test_images(data_root / "cifar-10-batches-py")
    keep = stratified_subset(labels, 30, 4)  # a --limit subset: rows follow it in every cell
    data = EvalData(name="cifar10", labels=labels[keep], num_classes=10, source="fixture",
                    images=torch.from_numpy(images[keep].transpose(0, 3, 1, 2).copy()))
    net = build_arch(TINY32, num_classes=10)
    net.load_state_dict(states["m1"])
    model = NormalizedModel(net, [MEAN] * 3, [STD] * 3)
    records, metrics, _ = _measure(data, model, data_root, seed=4, corruptions="benchmark",
                                   severities=[1, 3])
    cells = [m for m in metrics if m.metric == "top1_err"]
    assert [t.conditions for t in records] == [m.conditions for m in cells]  # one per row
    assert records.facts == {"dataset": "cifar10", "source": "released", "layout": "npy"}
    fog = records.one(corruption="fog", severity=3, category="weather", source="released")
    assert set(fog.columns) == {"index", "correct", "correct_top5", "pred", "confidence"}
    assert np.array_equal(fog["index"], np.arange(30))  # the position in the evaluated data
    assert fog["correct"].dtype == bool and fog["pred"].dtype == np.int32
    assert fog["confidence"].dtype == np.float32
    array = np.load(data_root / "CIFAR-10-C" / "fog.npy")
    assert np.array_equal(fog["pred"], _predict(states["m1"], TINY32, 10, array[80 + keep]))
    assert (fog["correct_top5"] >= fog["correct"]).all()
    assert {"mean_corruption_err", "category_err"} <= {m.metric for m in metrics}
    assert "mce" not in {m.metric for m in metrics}
    assert all(t.conditions.get("corruption") != "clean" for t in records)  # no mCE: no clean


def test_tree_records_tell_cells_on_other_images_apart(tmp_path: Path) -> None:
    wnids = ["n01443537", "n02123045", "n04067472"]
    data_root = tmp_path / "data"
    write_tinyimagenet(data_root, wnids, n_per_class=3)
    root = write_tree_c(data_root, "Tiny-ImageNet-C", wnids, n_per_class=3, size=64,
                        corruptions=("frost", "fog"), severities=(1, 3))
    first = sorted((root / "fog" / "3" / wnids[0]).iterdir())[0]
    first.rename(first.with_name("renamed.JPEG"))  # fog 3 holds another set of names
    data = EvalData(name="tinyimagenet", labels=np.repeat(np.arange(3), 2), num_classes=3,
                    source="fixture", images=torch.rand(6, 3, 64, 64))
    torch.manual_seed(0)
    records, metrics, _ = _measure(data, tiny_cnn64(3), data_root, corruptions=["frost", "fog"],
                                   severities=[1, 3])
    assert records.facts["layout"] == "tree"
    frost1 = records.one(corruption="frost", severity=1, category="weather", source="released")
    fog3 = records.one(corruption="fog", severity=3, category="weather", source="released")
    assert set(frost1.columns) == {"index", "correct", "pred", "confidence", "image_id"}
    keep = stratified_subset(np.repeat(np.arange(3), 3), 6, 0)
    assert np.array_equal(frost1["index"], keep)  # positions in the cell folder's listing
    assert frost1["image_id"].dtype == np.int64
    assert not np.array_equal(frost1["image_id"], fog3["image_id"])
    rows = {(m.metric, m.conditions.get("corruption")): m for m in metrics}
    assert rows["corruption_err", "fog"].ci_low is None and rows["corruption_err", "fog"].n == 12
    assert rows["corruption_err", "frost"].ci_low is not None


def test_imagenet_c_records_keep_the_clean_table_for_relative_mce(tmp_path: Path) -> None:
    wnids = ["n01440764", "n01443537"]
    data_root = tmp_path / "data"
    write_tree_c(data_root, "ImageNet-C", wnids, n_per_class=2, size=16, corruptions=BENCHMARK)
    gen = torch.Generator().manual_seed(0)
    data = EvalData(name="imagenet", labels=np.array([0, 0, 1, 1]), num_classes=2,
                    source="fixture", images=torch.rand(4, 3, 16, 16, generator=gen))
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    records, metrics, _ = _measure(data, net, data_root, corruptions="benchmark")
    clean = records.one(corruption="clean")
    with torch.no_grad():
        predicted = net(data.images).argmax(1).numpy()
    assert np.array_equal(clean["pred"], predicted)
    assert np.array_equal(clean["correct"], predicted == data.labels)
    rows = {m.metric: m for m in metrics}
    per_corruption = {m.conditions["corruption"]: m.value for m in metrics
                      if m.metric == "corruption_err"}
    clean_err = 100 * float(np.mean(predicted != data.labels))
    expected_rel = 100 * np.mean([(per_corruption[c] - clean_err) / (100 * ALEXNET_ERR[c] - 43.45)
                                  for c in BENCHMARK])
    assert rows["relative_mce"].value == pytest.approx(expected_rel)
    assert rows["mce"].value == pytest.approx(
        100 * np.mean([per_corruption[c] / (100 * ALEXNET_ERR[c]) for c in BENCHMARK]))


def test_severity_rows_average_each_category_and_the_15_at_each_severity() -> None:
    n, rng = 400, np.random.default_rng(3)
    names = [*BENCHMARK, "speckle_noise"]
    cells = {(c, s): Cell(rng.random(n) < 0.1 * s + 0.01 * i, 0)
             for i, c in enumerate(names) for s in (1, 3)}
    rows = {(m.conditions["category"], m.conditions["severity"]): m
            for m in summarize(cells, "released", [1, 3], seed=0) if m.metric == "severity_err"}
    rate = {key: 100 * cell.wrong.mean() for key, cell in cells.items()}
    for s in (1, 3):
        for category, members in CATEGORIES.items():
            if category == "extra":  # one of its four: no mean, as category_err
                assert ("extra", s) not in rows
                continue
            assert rows[category, s].value == pytest.approx(np.mean([rate[c, s]
                                                                     for c in members]))
        # the extra corruption never enters the mean over the 15
        assert rows["benchmark", s].value == pytest.approx(np.mean([rate[c, s]
                                                                    for c in BENCHMARK]))
        row = rows["benchmark", s]
        assert row.n == n and row.ci_low < row.value < row.ci_high  # a bootstrap over images
    partial = {key: cell for key, cell in cells.items() if key[0] != "fog"}
    again = [m for m in summarize(partial, "released", [1, 3], seed=0)
             if m.metric == "severity_err"]
    assert all(m.conditions["category"] != "benchmark" for m in again)  # not all 15: no mean
