"""Task `shift` and its readers: natural-shift sets written in their released formats (CIFAR-10.1
`.npy` pairs, CIFAR-10.2's `.npz`, ImageNet-V2's class-index folders, wnid folders of Sketch,
ImageNet-A and ImageNet-R), the 200-class restriction against a hand computation, the metrics
against hand-computed errors and Newcombe's published intervals, and a run end to end."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures import write_cifar10, write_imagenet_val
from PIL import Image
from tinynets import tiny_cnn

from benchmark.archs import build_arch
from benchmark.checkpoints import NormalizedModel
from benchmark.data import Preprocessing, stratified_subset
from benchmark.datasets import load_dataset, read_digits
from benchmark.errors import DataError, SuiteError
from benchmark.readers import read_imagenet_val
from benchmark.records import Records
from benchmark.reductions.shift import newcombe_interval
from benchmark.runner import RunOptions, run
from benchmark.shift_sets import (
    class_subset,
    detect,
    read_cifar10_1,
    read_cifar10_2,
    read_imagenet_v2,
    read_wnid_folders,
)
from benchmark.stats import wilson_interval
from benchmark.suites import load_suite
from benchmark.tasks import TaskContext, get_task, resolve_params
from benchmark.tasks.shift import restricted_columns
from reports.leaderboard import leaderboard

TINY32 = "tinynets:tiny_cnn32"
SMALL = Preprocessing(resize=20, crop=16)  # ImageNet fixtures at 16x16: cheap, same code path


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def write_cifar10_1(root: Path, version: str = "v6", n: int = 30, seed: int = 0) -> Path:
    """`CIFAR-10.1/cifar10.1_<v>_data.npy` (uint8 NHWC) and `_labels.npy` (int32, as
    released); returns the folder."""
    folder = root / "CIFAR-10.1"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"cifar10.1_{version}_data.npy", cifar_images(n, seed))
    labels = np.random.default_rng(seed + 1).permutation(np.arange(n) % 10).astype(np.int32)
    np.save(folder / f"cifar10.1_{version}_labels.npy", labels)
    return folder


def write_cifar10_2(root: Path, n: int = 20) -> Path:
    """`CIFAR-10.2/cifar102_test.npz` with the release's five members (two of them object
    arrays, which only unpickling could read); returns the file."""
    folder = root / "CIFAR-10.2"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar102_test.npz"
    keywords = np.empty(n, dtype=object)
    keywords[:] = [f"keyword {i}" for i in range(n)]
    np.savez(path, images=cifar_images(n, 5), labels=np.arange(n, dtype=np.int64) % 10,
             label_names=np.array(["airplane", "automobile", "bird", "cat", "deer", "dog",
                                   "frog", "horse", "ship", "truck"], dtype=object),
             ti_indices=np.arange(n, dtype=np.int64) * 7, keywords=keywords)
    return path


def save_jpeg(path: Path, level: int, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(level)
    picture = np.clip(level + rng.normal(0, 20, (size, size + 6, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(picture).save(path, format="JPEG", quality=95)


def tiny_model(seed: int = 0, num_classes: int | None = None) -> NormalizedModel:
    """The 32x32 tiny CNN with 10 classes, or with `num_classes` one for 16x16 images."""
    torch.manual_seed(seed)
    net = build_arch(TINY32, num_classes=10) if num_classes is None else \
        tiny_cnn(num_classes, in_channels=3, side=16)
    return NormalizedModel(net, [0.45] * 3, [0.25] * 3).eval()


def logits_of(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images.float() / (255 if images.dtype == torch.uint8 else 1))


def run_shift(ctx: TaskContext, **params) -> tuple[Records, dict]:
    """The task as the runner calls it (parameters validated first); its rows by (metric,
    shift_set)."""
    task = get_task("shift")
    records, metrics = task.run(ctx, resolve_params(task, params, "test suite"))
    return records, {(m.metric, m.conditions["shift_set"]): m for m in metrics}


# --- readers -----------------------------------------------------------------------------------

def test_cifar10_1_reads_both_versions_as_released(tmp_path):
    folder = write_cifar10_1(tmp_path, "v6", n=30)
    write_cifar10_1(tmp_path, "v4", n=21, seed=3)
    data = read_cifar10_1(folder)  # v6 by default
    stored = np.load(folder / "cifar10.1_v6_data.npy")
    assert data.images.dtype == torch.uint8 and tuple(data.images.shape) == (30, 3, 32, 32)
    assert torch.equal(data.images, torch.from_numpy(stored).permute(0, 3, 1, 2))
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == np.load(folder / "cifar10.1_v6_labels.npy").tolist()
    assert data.num_classes == 10 and data.name == "cifar10.1_v6"
    v4 = read_cifar10_1(folder, "v4")
    assert len(v4) == 21 and v4.name == "cifar10.1_v4"
    assert detect(folder) == {"kind": "cifar10.1", "path": str(folder), "version": "v6"}
    data_file = folder / "cifar10.1_v4_data.npy"  # a data file names its own version
    assert detect(data_file)["kind"] == "cifar10.1" and len(read_cifar10_1(data_file)) == 21


def test_cifar10_2_reads_images_and_labels_without_unpickling(tmp_path):
    path = write_cifar10_2(tmp_path, n=20)
    data = read_cifar10_2(path.parent)  # its folder, or the file itself
    with np.load(path, allow_pickle=True) as archive:
        assert torch.equal(data.images, torch.from_numpy(archive["images"]).permute(0, 3, 1, 2))
        assert data.labels.tolist() == archive["labels"].tolist()
    assert len(read_cifar10_2(path)) == 20
    assert detect(path.parent)["kind"] == "cifar10.2" and detect(path)["kind"] == "cifar10.2"


def test_malformed_files_are_errors_naming_the_file(tmp_path):
    folder = write_cifar10_1(tmp_path, n=10)
    data_file, labels_file = folder / "cifar10.1_v6_data.npy", folder / "cifar10.1_v6_labels.npy"
    good_labels = np.load(labels_file)
    cases = [
        (lambda: data_file.write_bytes(data_file.read_bytes()[:200]), data_file,
         "not a readable .npy file"),
        (lambda: np.save(data_file, cifar_images(10, 0).astype(np.float32)), data_file,
         r"float32 \(10, 32, 32, 3\), expected uint8"),
        (lambda: np.save(data_file, cifar_images(10, 0)[:, :28]), data_file, "expected uint8"),
        (lambda: np.save(labels_file, good_labels[:9]), labels_file, "9 labels for 10 images"),
        (lambda: np.save(labels_file, good_labels + 5), labels_file, "labels outside 0..9"),
        (lambda: np.save(labels_file, good_labels.astype(np.float64)), labels_file,
         "expected a 1-D integer array"),
        (lambda: labels_file.unlink(), labels_file, "file not found"),
    ]
    for damage, culprit, problem in cases:
        write_cifar10_1(tmp_path, n=10)
        damage()
        with pytest.raises(DataError, match=rf"{re.escape(str(culprit))}: .*{problem}"):
            read_cifar10_1(folder)
    npz = write_cifar10_2(tmp_path)
    np.savez(npz, pictures=cifar_images(3, 0), labels=np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match=rf"{re.escape(str(npz))}: no 'images' array"):
        read_cifar10_2(npz)
    npz.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(DataError, match=rf"{re.escape(str(npz))}: not a readable .npz"):
        read_cifar10_2(npz)
    with pytest.raises(DataError, match=r"elsewhere: file not found; expected CIFAR-10\.2's"):
        read_cifar10_2(tmp_path / "elsewhere")


def test_imagenet_v2_labels_are_the_folder_numbers_not_their_string_order(tmp_path):
    root = tmp_path / "imagenetv2-matched-frequency-format-val"
    for index in (0, 1, 2, 10):  # ImageFolder would sort '10' before '2'
        for k in range(2):
            save_jpeg(root / str(index) / f"{index * 10 + k:040x}.jpeg", 20 * index + k)
    data = read_imagenet_v2(root, num_classes=12, preprocessing=SMALL)
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2, 10, 10]
    assert data.num_classes == 12 and tuple(data.image_shape()) == (3, 16, 16)
    assert [Path(p).parent.name for p in data.dataset.paths] == ["0", "0", "1", "1", "2", "2",
                                                                 "10", "10"]
    assert detect(root)["kind"] == "imagenet-v2"
    for bad in ("12", "007", "n01440764"):
        save_jpeg(root / bad / "x.jpeg", 9)
        with pytest.raises(DataError, match=re.escape(f"{root / bad}: ImageNet-V2 class "
                                                      "folders are named by the class index "
                                                      "0..11")):
            read_imagenet_v2(root, num_classes=12, preprocessing=SMALL)
        (root / bad / "x.jpeg").unlink()
        (root / bad).rmdir()
    (root / "3").mkdir()
    with pytest.raises(DataError, match=re.escape(f"{root / '3'}: class folder holds no")):
        read_imagenet_v2(root, num_classes=12, preprocessing=SMALL)


def test_class_subsets_are_the_authors_200_wnids():
    a, r = class_subset("imagenet-a-200"), class_subset("imagenet-r-200")
    assert len(a) == len(r) == 200 and list(a) == sorted(a) and list(r) == sorted(r)
    # ImageNet-A's first class is ImageNet-1k index 6 (stingray): `thousand_k_to_200[6] == 0`
    assert a[0] == "n01498041" and "n01440764" not in a
    assert r[0] == "n01443537" and r[-1] == "n12267677"  # goldfish ... corn
    assert len(set(a) & set(r)) == 86


def test_wnid_folders_map_to_the_models_classes_and_guard_the_subset(tmp_path):
    classes = sorted((*class_subset("imagenet-a-200")[:3], "n01440764", "n15075141"))
    root = tmp_path / "imagenet-a"
    for j, wnid in enumerate(class_subset("imagenet-a-200")[:3]):
        save_jpeg(root / wnid / f"0.{j}.jpg", 30 * j)
        save_jpeg(root / wnid / f"1.{j}.jpg", 30 * j + 5)
    (root / "README.txt").write_text("ImageNet-A: 200 classes\n")  # beside the folders
    data = read_wnid_folders(root, classes, SMALL, "imagenet-a",
                             allowed=class_subset("imagenet-a-200"))
    expected = [classes.index(w) for w in class_subset("imagenet-a-200")[:3] for _ in range(2)]
    assert data.labels.tolist() == expected and data.num_classes == 5
    save_jpeg(root / "n01440764" / "x.jpg", 1)  # a class ImageNet-A does not have
    with pytest.raises(DataError, match=re.escape(f"{root / 'n01440764'}: 'n01440764' is not "
                                                  "one of imagenet-a's 200 classes")):
        read_wnid_folders(root, classes, SMALL, "imagenet-a",
                          allowed=class_subset("imagenet-a-200"))
    sketch = read_wnid_folders(root, classes, SMALL, "imagenet-sketch")  # no subset: 5-way
    assert sorted(set(sketch.labels.tolist())) == sorted([*set(expected), 0])
    with pytest.raises(DataError, match="'n01440764' is not a class of the evaluated model"):
        read_wnid_folders(root, classes[1:], SMALL, "imagenet-sketch")


def test_detect_tells_the_200_class_sets_apart_and_refuses_partial_copies(tmp_path):
    for name in ("imagenet-a-200", "imagenet-r-200"):
        root = tmp_path / name
        for wnid in class_subset(name):
            (root / wnid).mkdir(parents=True)
        assert detect(root)["kind"] == name.removesuffix("-200")
    partial = tmp_path / "partial"
    for wnid in class_subset("imagenet-r-200")[:50]:
        (partial / wnid).mkdir(parents=True)
    with pytest.raises(DataError, match="not all of them: name the set's kind"):
        detect(partial)
    with pytest.raises(DataError, match="missing: shift set not found"):
        detect(tmp_path / "missing")
    (tmp_path / "odd" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="not a shift set rubench can read"):
        detect(tmp_path / "odd")


# --- the 200-class restriction and the metrics -------------------------------------------------

def test_restriction_to_200_classes_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 3, (64, 1000))).float()
    classes = np.sort(rng.choice(1000, 200, replace=False))
    outside = np.setdiff1d(np.arange(1000), classes)
    logits[:32, outside[0]] = 100.0  # the 1000-way argmax lies outside the subset
    labels = torch.from_numpy(rng.choice(classes, 64))
    columns = restricted_columns(logits, labels, classes)
    for i in range(64):
        row = logits[i].numpy()
        inside = row[classes]
        best = classes[int(np.argmax(inside))]
        top5 = classes[np.argsort(-inside)[:5]]
        assert columns["pred"][i] == best and bool(columns["correct"][i]) == (best == labels[i])
        assert bool(columns["correct_top5"][i]) == (int(labels[i]) in top5)
        weights = np.exp(inside - inside.max())
        assert columns["confidence"][i] == pytest.approx(1 / weights.sum(), rel=1e-5)
    assert columns["pred"].dtype == np.int32 and np.isin(columns["pred"], classes).all()
    assert not np.isin(columns["pred"], outside).any()
    unrestricted = restricted_columns(logits, labels, None)  # the full 1000-way columns
    assert (unrestricted["pred"][:32] == outside[0]).all()


def test_newcombe_interval_reproduces_the_published_examples():
    """Newcombe (1998), Table II, method 10 (hybrid score)."""
    for (a, m, b, n), expected in (((56, 70, 48, 80), (0.0524, 0.3339)),
                                   ((9, 10, 3, 10), (0.1705, 0.8090)),
                                   ((5, 56, 0, 29), (-0.0381, 0.1926)),
                                   ((10, 10, 0, 10), (0.6075, 1.0000))):
        low, high = newcombe_interval(a, m, b, n)
        assert (round(low, 4), round(high, 4)) == expected


def test_metrics_are_hand_computed_errors_and_gaps():
    records = Records()
    shifted = np.array([1, 0, 0, 1, 0, 1, 0, 0], dtype=bool)  # 5 of 8 wrong
    records.add({"shift_set": "v2"}, index=np.arange(8), correct=shifted,
                correct_top5=shifted | (np.arange(8) < 6))  # 2 of 8 wrong at top-5
    records.add({"shift_set": "r", "class_subset": "imagenet-r-200"}, index=np.arange(4),
                correct=np.array([1, 1, 0, 1], dtype=bool))
    records.add({"shift_set": "clean"}, index=np.arange(10),
                correct=np.arange(10) < 8)  # 2 of 10 wrong
    records.add({"shift_set": "clean", "class_subset": "imagenet-r-200"},
                index=np.array([1, 4, 6]), correct=np.array([1, 1, 1], dtype=bool))
    records.add({"shift_set": "a", "class_subset": "imagenet-a-200"}, index=np.arange(2),
                correct=np.array([0, 1], dtype=bool))  # no clean image of A's classes
    rows = {(m.metric, m.conditions["shift_set"]): m
            for m in get_task("shift").reduce(records, {"sets": {}, "limit": 0}, 0)}
    assert rows["top1_err", "v2"].value == 62.5 and rows["top5_err", "v2"].value == 25.0
    assert (rows["top1_err", "v2"].ci_low, rows["top1_err", "v2"].ci_high) == pytest.approx(
        tuple(100 * b for b in wilson_interval(5, 8)))
    gap = rows["gap_err", "v2"]
    assert gap.value == pytest.approx(62.5 - 20.0) and gap.n == 18
    assert (gap.ci_low, gap.ci_high) == pytest.approx(
        tuple(100 * b for b in newcombe_interval(5, 8, 2, 10)))
    r_gap = rows["gap_err", "r"]  # against the clean images of R's classes: 0 of 3 wrong
    assert r_gap.value == pytest.approx(25.0) and r_gap.n == 7
    assert r_gap.conditions == {"shift_set": "r", "class_subset": "imagenet-r-200"}
    assert gap.higher_is_better is False and ("top5_err", "r") not in rows
    assert rows["top1_err", "a"].value == 50.0 and ("gap_err", "a") not in rows
    assert not any(name == "clean" for _, name in rows)


def test_bad_parameters_are_suite_errors():
    task = get_task("shift")
    cases = [
        ({"sets": {"clean": "CIFAR-10.1"}}, "'clean' is reserved"),
        ({"sets": {"x": {"kind": "cifar10.3", "path": "p"}}}, "kind 'cifar10.3'"),
        ({"sets": {"x": {"kind": "cifar10.2", "path": "p", "version": "v6"}}}, "unknown key"),
        ({"sets": {"x": {"kind": "cifar10.1", "path": "p", "version": "v5"}}}, "version"),
        ({"sets": {"x": {"kind": "imagenet-r"}}}, "needs a path"),
        ({"sets": {"x": ""}}, "empty path"),
        ({"sets": {"x": "p"}, "limit": -1}, "'limit'"),
        ({"sets": {"x": {"kind": "split"}}}, "needs a split"),
        ({"sets": {"x": {"kind": "split", "split": "val", "path": "p"}}}, "unknown key"),
        ({"sets": {"x": {"kind": "split", "split": "train"}}}, "the model has seen it"),
    ]
    for params, message in cases:
        with pytest.raises(SuiteError, match=message):
            resolve_params(task, params, "test suite")


# --- the task ----------------------------------------------------------------------------------

def cifar_ctx(root: Path, model: torch.nn.Module) -> TaskContext:
    return TaskContext(model=model, data=load_dataset("cifar10", "test", None, root), seed=0,
                       device=torch.device("cpu"), batch_size=7, progress=False, data_root=root)


def test_cifar_sets_numbers_match_the_model_and_limit_draws_a_stratified_subset(tmp_path):
    write_cifar10(tmp_path, n_test=20)
    write_cifar10_1(tmp_path, n=30)
    write_cifar10_2(tmp_path, n=20)
    model = tiny_model()
    ctx = cifar_ctx(tmp_path, model)
    records, rows = run_shift(ctx, sets={"v6": "CIFAR-10.1", "c102": {
        "kind": "cifar10.2", "path": "CIFAR-10.2/cifar102_test.npz"}})
    clean_wrong = int((logits_of(model, ctx.data.images).argmax(1).numpy()
                       != ctx.data.labels).sum())
    for name, data in (("v6", read_cifar10_1(tmp_path / "CIFAR-10.1")),
                       ("c102", read_cifar10_2(tmp_path / "CIFAR-10.2"))):
        wrong = int((logits_of(model, data.images).argmax(1).numpy() != data.labels).sum())
        assert rows["top1_err", name].value == pytest.approx(100 * wrong / len(data))
        assert rows["gap_err", name].value == pytest.approx(100 * (wrong / len(data)
                                                                   - clean_wrong / 20))
        assert records.one(shift_set=name)["index"].tolist() == list(range(len(data)))
    assert rows["top5_err", "v6"].n == 30
    limited, _ = run_shift(cifar_ctx(tmp_path, model), sets={"v6": "CIFAR-10.1"}, limit=10)
    labels = read_cifar10_1(tmp_path / "CIFAR-10.1").labels
    assert limited.one(shift_set="v6")["index"].tolist() == \
        stratified_subset(labels, 10, 0).tolist()
    with pytest.raises(DataError, match=r"shift set 'gone': .*gone: shift set not found"):
        run_shift(cifar_ctx(tmp_path, model), sets={"gone": "gone"})
    with pytest.raises(SuiteError, match="no shift sets"):
        run_shift(ctx, sets={})


def test_imagenet_sets_are_read_with_the_val_preprocessing_and_restricted_to_200(tmp_path):
    """A val of R's 200 classes plus two others (202 model classes): ImageNet-R images are
    scored over R's 200 logits, ImageNet-V2 folders by number, and R's gap is to the clean
    images of R's classes under the same restriction."""
    r_wnids = list(class_subset("imagenet-r-200"))
    wnids = sorted([*r_wnids, "n01440764", "n15075141"])  # tench, toilet tissue: not in R
    write_imagenet_val(tmp_path / "imagenet", wnids, n_per_class=1, size=24)
    data = read_imagenet_val(tmp_path / "imagenet" / "val", num_classes=202, preprocessing=SMALL)
    for j, wnid in enumerate(r_wnids[:4]):
        save_jpeg(tmp_path / "imagenet-r" / wnid / f"art_{j}.jpg", 40 * j + 10)
    for index in (0, 5, 201):
        save_jpeg(tmp_path / "v2" / str(index) / "a.jpeg", index)
    model = tiny_model(seed=1, num_classes=202)
    ctx = TaskContext(model=model, data=data, seed=0, device=torch.device("cpu"),
                      batch_size=64, progress=False, data_root=tmp_path)
    records, rows = run_shift(ctx, sets={"r": {"kind": "imagenet-r", "path": "imagenet-r"},
                                         "v2": "v2"})
    classes = np.array([wnids.index(w) for w in r_wnids])
    r_data = read_wnid_folders(tmp_path / "imagenet-r", wnids, SMALL, "imagenet-r")
    r_logits = logits_of(model, torch.stack([r_data.dataset[i][0] for i in range(4)]))
    pred = classes[r_logits[:, classes].argmax(1).numpy()]
    table = records.one(shift_set="r", class_subset="imagenet-r-200")
    assert table["pred"].tolist() == pred.tolist()
    assert table["correct"].tolist() == (pred == r_data.labels).tolist()
    clean_logits = logits_of(model, torch.cat([x for x, _ in data.batches(64)]))
    inside = np.flatnonzero(np.isin(data.labels, classes))
    assert len(inside) == 200
    reference = records.one(shift_set="clean", class_subset="imagenet-r-200")
    assert reference["index"].tolist() == inside.tolist()
    clean_pred = classes[clean_logits[inside][:, classes].argmax(1).numpy()]
    clean_err = np.mean(clean_pred != data.labels[inside])
    assert rows["gap_err", "r"].value == pytest.approx(100 * (np.mean(pred != r_data.labels)
                                                             - clean_err))
    assert rows["top1_err", "r"].conditions["class_subset"] == "imagenet-r-200"
    v2 = records.one(shift_set="v2")
    v2_logits = logits_of(model, torch.stack([read_imagenet_v2(tmp_path / "v2", 202, SMALL)
                                              .dataset[i][0] for i in range(3)]))
    assert v2["pred"].tolist() == v2_logits.argmax(1).tolist()
    assert v2["correct"].tolist() == (v2_logits.argmax(1).numpy() == [0, 5, 201]).tolist()
    assert "class_subset" not in rows["gap_err", "v2"].conditions
    full_wrong = np.mean(clean_logits.argmax(1).numpy() != data.labels)
    assert rows["gap_err", "v2"].value == pytest.approx(
        100 * (np.mean(v2_logits.argmax(1).numpy() != [0, 5, 201]) - full_wrong))
    assert get_task("shift").reduce(Records.decode(records.encode()),
                                    resolve_params(get_task("shift"), {"sets": {}}, "t"),
                                    0) == list(rows.values())


def test_imagenet_sets_need_imagenet_and_cifar_sets_need_cifar10(tmp_path):
    write_cifar10(tmp_path, n_test=10)
    save_jpeg(tmp_path / "v2" / "0" / "a.jpeg", 5)
    with pytest.raises(DataError, match=r"evaluate them on ImageNet val .*not on cifar10"):
        run_shift(cifar_ctx(tmp_path, tiny_model()), sets={"v2": "v2"})
    write_imagenet_val(tmp_path / "imagenet", ["n01440764", "n01443537"], size=24)
    write_cifar10_1(tmp_path)
    ctx = TaskContext(model=tiny_model(num_classes=2),
                      data=read_imagenet_val(tmp_path / "imagenet" / "val", 2, SMALL), seed=0,
                      device=torch.device("cpu"), batch_size=8, progress=False,
                      data_root=tmp_path)
    with pytest.raises(DataError, match=r"cifar10\.1 holds 3x32x32 images of CIFAR-10's 10"):
        run_shift(ctx, sets={"v6": "CIFAR-10.1"})
    with pytest.raises(DataError, match="199 of imagenet-r-200's classes are not among"):
        save_jpeg(tmp_path / "r" / "n01443537" / "a.jpg", 3)
        run_shift(ctx, sets={"r": {"kind": "imagenet-r", "path": "r"}})


def test_run_end_to_end_stores_rows_keyed_by_the_set_files(tmp_path):
    write_cifar10(tmp_path, n_test=20)
    write_cifar10_1(tmp_path, n=30)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "rubench.toml").write_text(f'arch = "{TINY32}"\nnum_classes = 10\n'
                                      "mean = [0.45, 0.45, 0.45]\nstd = [0.25, 0.25, 0.25]\n")
    for seed in (0, 1):
        torch.save(tiny_model(seed=seed).net.state_dict(), zoo / f"m{seed}.pth")
    suite = load_suite("cifar10").select(["clean", "shift"])
    options = dict(ckpt_dir=zoo, out_dir=tmp_path / "out", suite=suite, data_root=tmp_path,
                   device="cpu", batch_size=16, progress=False)
    summary = run(RunOptions(**options))
    assert not summary.failures and summary.computed == 4
    results = pd.read_csv(summary.results_csv)
    shift = results[results.task == "shift"]
    assert set(shift.metric) == {"top1_err", "top5_err", "gap_err"}
    assert set(shift.shift_set) == {"cifar10_1_v6"} and (shift.n[shift.metric != "gap_err"]
                                                         == 30).all()
    assert (shift.ci_low <= shift.value).all() and (shift.value <= shift.ci_high).all()
    for name in ("m0", "m1"):
        mine = shift[shift.checkpoint == name].set_index("metric").value
        clean = results[(results.checkpoint == name) & (results.task == "clean")
                        & (results.metric == "top1_err")].value.item()
        assert mine["gap_err"] == pytest.approx(mine["top1_err"] - clean)
        assert leaderboard(results).values.at[name, "Shift err"] == mine["top1_err"]
    assert "Shift gap" in leaderboard(results, "Shift gap").values.columns
    assert run(RunOptions(**options)).reused == 4  # stored, keyed by the set's files
    labels = tmp_path / "CIFAR-10.1" / "cifar10.1_v6_labels.npy"
    np.save(labels, np.load(labels)[::-1].copy())  # a changed file re-keys the stored rows
    again = run(RunOptions(**options))
    assert (again.computed, again.reused) == (2, 2)  # the clean units stay stored


def test_a_held_out_split_is_a_null_shift_read_like_the_evaluated_data():
    """digits' val split: the same distribution, labels and images as its own reader gives."""
    model = NormalizedModel(build_arch("tinynets:tiny_cnn", num_classes=10), [0.3], [0.25])
    ctx = TaskContext(model=model.eval(), data=read_digits(split="test"), seed=0,
                      device=torch.device("cpu"), batch_size=256, progress=False)
    records, rows = run_shift(ctx, sets={"val": {"kind": "split", "split": "val"}}, limit=50)
    val = read_digits(split="val")
    chosen = stratified_subset(val.labels, 50, 0)
    wrong = logits_of(model, val.images[chosen]).argmax(1).numpy() != val.labels[chosen]
    clean_wrong = logits_of(model, ctx.data.images).argmax(1).numpy() != ctx.data.labels
    assert records.one(shift_set="val")["index"].tolist() == chosen.tolist()
    assert rows["top1_err", "val"].value == pytest.approx(100 * wrong.mean())
    assert rows["gap_err", "val"].value == pytest.approx(100 * (wrong.mean()
                                                                 - clean_wrong.mean()))
    with pytest.raises(SuiteError, match="digits has the splits"):
        run_shift(ctx, sets={"x": {"kind": "split", "split": "holdout"}})
