"""Evaluation data (benchmark/data.py) and the data set registry (benchmark/datasets.py)."""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import cifar_planted_pixel, write_cifar10
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from benchmark.data import EvalData, stratified_subset
from benchmark.datasets import DATASETS, dataset_path, load_dataset, read_digits
from benchmark.errors import DataError

# ---------------------------------------------------------------------------------------------
# stratified_subset


def apportion(counts: dict[int, int], limit: int) -> dict[int, int]:
    """Largest-remainder apportionment of `limit` over classes, in exact rational arithmetic.

    Ties between equal remainders go to the smaller class index.
    """
    total = sum(counts.values())
    exact = {c: Fraction(n * limit, total) for c, n in counts.items()}
    quota = {c: int(e) for c, e in exact.items()}  # floor (non-negative)
    short = limit - sum(quota.values())
    ranked = sorted(counts, key=lambda c: (-(exact[c] - quota[c]), c))
    for c in ranked[:short]:
        quota[c] += 1
    return quota


def class_counts(labels: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts, strict=True)}


def shuffled_labels(sizes: dict[int, int], seed: int = 0) -> np.ndarray:
    """Labels with `sizes[c]` members of class c, interleaved in a seeded random order."""
    labels = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in sizes.items()])
    return np.random.default_rng(seed).permutation(labels)


UNBALANCED = [
    ({0: 50, 1: 30, 2: 15, 3: 5}, 37),
    ({0: 3, 1: 97}, 10),
    ({3: 7, 7: 11, 9: 2, 12: 40}, 19),  # labels need not be 0..K-1
    ({0: 1, 1: 1, 2: 1, 3: 60}, 5),  # singleton classes
    ({0: 178, 1: 182, 2: 177, 3: 183, 4: 181, 5: 182, 6: 181, 7: 179, 8: 174, 9: 180}, 600),
    ({0: 13, 1: 29, 2: 8, 3: 21, 4: 2}, 41),
]


@pytest.mark.parametrize(("sizes", "limit"), UNBALANCED)
def test_stratified_subset_matches_largest_remainder_apportionment(sizes, limit):
    labels = shuffled_labels(sizes)
    index = stratified_subset(labels, limit, seed=3)
    assert len(index) == limit
    expected = {c: n for c, n in apportion(sizes, limit).items() if n}
    assert class_counts(labels[index]) == expected


def test_stratified_subset_breaks_exact_ties_by_class_index():
    """Classes of 1, 4 and 1 items, limit 4: every exact share (2/3, 8/3, 2/3) has remainder 2/3,
    so the two spare places go to classes 0 and 1 -> counts (1, 3, 0)."""
    labels = np.repeat([0, 1, 2], [1, 4, 1])
    assert apportion({0: 1, 1: 4, 2: 1}, 4) == {0: 1, 1: 3, 2: 0}
    counts = np.bincount(labels[stratified_subset(labels, 4, seed=0)], minlength=3)
    assert counts.tolist() == [1, 3, 0]


def test_stratified_subset_sorted_unique_and_seeded():
    labels = shuffled_labels({0: 40, 1: 25, 2: 35}, seed=1)
    first = stratified_subset(labels, 30, seed=7)
    assert np.array_equal(first, stratified_subset(labels, 30, seed=7))
    assert not np.array_equal(first, stratified_subset(labels, 30, seed=8))
    assert np.all(np.diff(first) > 0)  # sorted, no repeats
    assert first.min() >= 0 and first.max() < len(labels)
    assert np.issubdtype(first.dtype, np.integer)


def test_stratified_subset_seeds_draw_different_members_of_each_class():
    """Different seeds choose different items, while keeping the same per-class counts."""
    labels = shuffled_labels({0: 40, 1: 40}, seed=2)
    picks = [stratified_subset(labels, 20, seed=s) for s in range(5)]
    assert len({tuple(p) for p in picks}) == 5
    for p in picks:
        assert class_counts(labels[p]) == {0: 10, 1: 10}


@pytest.mark.parametrize("limit", [0, -1, 12, 13, 1000])
def test_stratified_subset_everything_when_limit_is_zero_or_too_large(limit):
    labels = shuffled_labels({0: 5, 1: 7})
    assert np.array_equal(stratified_subset(labels, limit, seed=0), np.arange(12))


def test_stratified_subset_class_with_too_few_members():
    """A class whose share rounds below one item gets none; one with one item never gets two."""
    labels = np.array([0] * 98 + [1] + [2])
    index = stratified_subset(labels, 10, seed=0)
    assert len(index) == 10
    assert class_counts(labels[index]) == {0: 10}
    index = stratified_subset(labels, 99, seed=0)
    assert apportion({0: 98, 1: 1, 2: 1}, 99) == {0: 97, 1: 1, 2: 1}
    assert class_counts(labels[index]) == {0: 97, 1: 1, 2: 1}


# ---------------------------------------------------------------------------------------------
# EvalData


def collect(data: EvalData, batch_size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    images, labels = [], []
    for x, y in data.batches(batch_size):
        images.append(x)
        labels.append(y)
    return images, labels


def test_evaldata_float_batches_cover_all_items_in_order():
    images = torch.rand(11, 3, 4, 5)
    labels = np.arange(11) % 3
    data = EvalData("t", labels, 3, "mem", images=images)
    xs, ys = collect(data, 4)
    assert [len(x) for x in xs] == [4, 4, 3]
    assert torch.equal(torch.cat(xs), images)
    assert torch.cat(ys).tolist() == labels.tolist()
    assert len(data) == 11 and data.image_shape() == (3, 4, 5)


def test_evaldata_uint8_batches_are_value_over_255_float32():
    raw = torch.arange(256, dtype=torch.uint8).repeat(3).reshape(3, 1, 16, 16)
    data = EvalData("t", np.array([2, 0, 1]), 3, "mem", images=raw)
    xs, ys = collect(data, 2)
    out = torch.cat(xs)
    assert out.dtype == torch.float32
    expected = torch.from_numpy(raw.numpy().astype(np.float32) / np.float32(255))
    assert torch.equal(out, expected)
    assert out.min() == 0.0 and out.max() == 1.0
    assert torch.cat(ys).tolist() == [2, 0, 1]
    assert raw.dtype == torch.uint8 and int(raw.max()) == 255  # stored images not modified


class LazySquares(Dataset):
    """Map-style data set: item i is a (1, 2, 2) image filled with i / 100, label i % 4."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return torch.full((1, 2, 2), i / 100), i % 4


def test_evaldata_lazy_dataset_batches_cover_all_items_in_order():
    data = EvalData("lazy", np.arange(9) % 4, 4, "lazy", dataset=LazySquares(9))
    xs, ys = collect(data, 4)
    assert [len(x) for x in xs] == [4, 4, 1]
    images = torch.cat(xs)
    assert torch.allclose(images[:, 0, 0, 0], torch.arange(9) / 100)
    assert torch.cat(ys).tolist() == [i % 4 for i in range(9)]
    assert data.image_shape() == (1, 2, 2)


def test_evaldata_subset_keeps_images_and_labels_aligned():
    images = torch.arange(8, dtype=torch.float32).reshape(8, 1, 1, 1) / 10
    labels = np.array([10, 11, 12, 13, 14, 15, 16, 17])
    index = np.array([6, 1, 3])
    for data in (EvalData("m", labels, 18, "mem", images=images),
                 EvalData("l", labels, 18, "lazy", dataset=_Indexed(images))):
        sub = data.subset(index)
        assert len(sub) == 3
        xs, ys = collect(sub, 2)
        assert torch.cat(ys).tolist() == [16, 11, 13]
        assert torch.allclose(torch.cat(xs).flatten(), torch.tensor([0.6, 0.1, 0.3]))
        assert len(data) == 8  # the original is unchanged


class _Indexed(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], 10 + i


def test_evaldata_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        EvalData("t", np.zeros(4, dtype=np.int64), 2, "mem", images=torch.zeros(5, 1, 2, 2))
    with pytest.raises(ValueError):
        EvalData("t", np.zeros(4, dtype=np.int64), 2, "lazy", dataset=LazySquares(3))


def test_evaldata_needs_exactly_one_source():
    with pytest.raises(ValueError):
        EvalData("t", np.zeros(2, dtype=np.int64), 2, "none")
    with pytest.raises(ValueError):
        EvalData("t", np.zeros(2, dtype=np.int64), 2, "both",
                 images=torch.zeros(2, 1, 1, 1), dataset=LazySquares(2))


# ---------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def sk_digits():
    return load_digits()


@pytest.fixture(scope="module")
def digit_splits():
    return {split: read_digits(split=split) for split in ("train", "val", "test")}


def _locate(data: EvalData, sk) -> np.ndarray:
    """Indices into sklearn's digits of each image of `data` (images there are not unique, so
    match on image *and* label, taking each sklearn index at most once)."""
    flat = (sk.images.reshape(len(sk.images), -1) / 16.0).astype(np.float32)
    keys: dict[bytes, list[int]] = {}
    for i, (row, label) in enumerate(zip(flat, sk.target, strict=True)):
        keys.setdefault(row.tobytes() + bytes([label]), []).append(i)
    found = []
    for image, label in zip(data.images.numpy(), data.labels, strict=True):
        found.append(keys[image.reshape(-1).tobytes() + bytes([int(label)])].pop(0))
    return np.array(found)


def test_digits_splits_sizes_disjoint_and_complete(digit_splits, sk_digits):
    sizes = {split: len(data) for split, data in digit_splits.items()}
    assert sizes == {"train": 997, "val": 200, "test": 600}
    located = {split: _locate(data, sk_digits) for split, data in digit_splits.items()}
    union = np.concatenate(list(located.values()))
    assert len(np.unique(union)) == 1797  # disjoint and together everything
    assert np.array_equal(np.sort(union), np.arange(len(sk_digits.target)))
    for data in digit_splits.values():
        assert data.num_classes == 10 and data.image_shape() == (1, 8, 8)
        assert data.images.dtype == torch.float32 and data.labels.dtype == np.int64


def test_digits_splits_are_stratified(digit_splits, sk_digits):
    """Every split's class counts are within one of its proportional share of the full set."""
    full = np.bincount(sk_digits.target, minlength=10)
    for data in digit_splits.values():
        counts = np.bincount(data.labels, minlength=10)
        share = full * len(data) / full.sum()
        assert np.all(np.abs(counts - share) < 1 + 1e-9), counts


def test_digits_pixels_are_sklearn_images_over_16(digit_splits, sk_digits):
    for data in digit_splits.values():
        located = _locate(data, sk_digits)
        for position in (0, 1, len(data) // 2, len(data) - 1):
            i = located[position]
            expected = torch.from_numpy(sk_digits.images[i].astype(np.float32) / np.float32(16))
            assert torch.equal(data.images[position, 0], expected)
            assert data.labels[position] == sk_digits.target[i]
        assert float(data.images.min()) >= 0.0 and float(data.images.max()) == 1.0


def test_digits_identical_across_calls(digit_splits):
    for split, data in digit_splits.items():
        again = read_digits(split=split)
        assert torch.equal(again.images, data.images)
        assert np.array_equal(again.labels, data.labels)


def test_digits_unknown_split():
    with pytest.raises(DataError, match="holdout"):
        read_digits(split="holdout")


# ---------------------------------------------------------------------------------------------
# load_dataset / dataset_path


def test_dataset_path_default_folders_under_data_root(tmp_path):
    expected = {
        "cifar10": tmp_path / "cifar-10-batches-py",
        "cifar100": tmp_path / "cifar-100-python",
        "tinyimagenet": tmp_path / "tiny-imagenet-200",
        "imagenet": tmp_path / "imagenet" / "val",
    }
    for name, folder in expected.items():
        assert dataset_path(name, None, tmp_path) == folder
    assert dataset_path("digits", None, tmp_path) is None  # embedded, no folder


def test_dataset_path_overrides(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere" / "c10"
    assert dataset_path("cifar10", str(elsewhere), tmp_path / "root") == elsewhere
    assert dataset_path("cifar10", "mine/c10", tmp_path) == tmp_path / "mine" / "c10"
    monkeypatch.chdir(tmp_path)
    assert dataset_path("cifar100", None, None) == tmp_path / "cifar-100-python"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert dataset_path("cifar10", "~/c10", Path("/nowhere")) == tmp_path / "home" / "c10"


def _trusted_batch(path: Path) -> dict:
    """Load a pickle this test wrote itself."""
    with path.open("rb") as file:
        return pickle.load(file, encoding="bytes")


def test_load_dataset_cifar10_from_data_root(tmp_path):
    folder = write_cifar10(tmp_path, n_test=10)
    batch = _trusted_batch(folder / "test_batch")
    data = load_dataset("cifar10", "test", None, tmp_path)
    assert len(data) == 10 and data.num_classes == 10
    assert data.labels.tolist() == list(batch[b"labels"])
    assert data.image_shape() == (3, 32, 32)
    images = torch.cat([x for x, _ in data.batches(4)])
    expected = batch[b"data"].reshape(10, 3, 32, 32).astype(np.float32) / np.float32(255)
    assert torch.equal(images, torch.from_numpy(expected))
    for i in range(10):
        channel, y, x = cifar_planted_pixel(i)
        assert images[i, channel, y, x] == 1.0
    train = load_dataset("cifar10", "train", None, tmp_path)
    assert len(train) == 5 * 6


def test_load_dataset_absolute_path_override(tmp_path):
    folder = write_cifar10(tmp_path / "somewhere", n_test=7)
    data = load_dataset("cifar10", "test", str(folder), tmp_path / "empty_root")
    assert len(data) == 7
    relative = load_dataset("cifar10", "test", "somewhere/cifar-10-batches-py", tmp_path)
    assert relative.labels.tolist() == data.labels.tolist()


def test_load_dataset_digits_needs_no_root(tmp_path):
    data = load_dataset("digits", "val", None, tmp_path / "nothing_here")
    assert len(data) == 200


def test_load_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="svhn"):
        load_dataset("svhn", "test", None, tmp_path)
    with pytest.raises(DataError, match="'val'"):
        load_dataset("cifar10", "val", None, tmp_path)
    with pytest.raises(DataError, match="'test'"):
        load_dataset("tinyimagenet", "test", None, tmp_path)
    with pytest.raises(DataError, match="'bogus'"):
        load_dataset("digits", "bogus", None, tmp_path)
    with pytest.raises(DataError, match="cifar-10-batches-py"):  # nothing under the root
        load_dataset("cifar10", "test", None, tmp_path)


def test_registry_splits():
    assert {name: info.splits for name, info in DATASETS.items()} == {
        "digits": ("train", "val", "test"),
        "cifar10": ("train", "test"),
        "cifar100": ("train", "test"),
        "tinyimagenet": ("val",),
        "imagenet": ("val",),
    }
