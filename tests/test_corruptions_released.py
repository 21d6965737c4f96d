"""Readers of released corrupted sets: `.npy` slices and checks, JPEG trees and the frost defect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures import class_level
from fixtures_corruptions import corrupt_like_fixture, truncate, write_npy_c, write_tree_c

from corruptions.catalog import ALL, BENCHMARK, CATEGORIES, EXTRA, select
from corruptions.released import (
    CorruptedSetError,
    ImageFileDataset,
    NpyCorruptions,
    TreeCorruptions,
    detect_layout,
)

WNIDS = ["n09999999", "n01443537", "n04067472"]


def _clean(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 4


def test_catalog_groups_and_selection() -> None:
    assert len(BENCHMARK) == 15 and len(EXTRA) == 4 and len(set(ALL)) == 19
    assert select("benchmark", ["noise"]) == list(CATEGORIES["noise"])
    assert select(["saturate", "fog"]) == ["fog", "saturate"]  # catalog order
    with pytest.raises(ValueError, match="unknown name"):
        select(["fogg"])
    with pytest.raises(ValueError, match="unknown"):
        select("all", ["rain"])


def test_npy_severity_slices_and_subset_rows(tmp_path: Path) -> None:
    images, labels = _clean()
    root = write_npy_c(tmp_path, "CIFAR-10-C", images, labels, corruptions=("fog", "snow"))
    store = NpyCorruptions(root, image_shape=(32, 32, 3))
    assert detect_layout(root) == "npy"
    np.testing.assert_array_equal(store.test_labels, labels)
    assert isinstance(store.array("fog"), np.memmap)  # memory-mapped, not loaded
    for severity in (1, 3, 5):
        expected = corrupt_like_fixture(images, "fog", severity)
        np.testing.assert_array_equal(store.images("fog", severity), expected)
        np.testing.assert_array_equal(store.images("fog", severity, np.array([2, 7])),
                                      expected[[2, 7]])
    assert store.array("fog") is store.array("fog")  # opened once per corruption


@pytest.mark.parametrize("damage, message", [
    ("missing", r"fog\.npy: file not found"),
    ("truncated", r"fog\.npy: not a readable \.npy file"),
    ("header", r"fog\.npy: not a readable \.npy file"),
    ("dtype", r"fog\.npy: dtype float32, expected uint8"),
    ("rows", r"fog\.npy: shape \(55, 32, 32, 3\), expected \(60, H, W"),
    ("size", r"fog\.npy: images are \(16, 16, 3\)"),
])
def test_malformed_npy_names_the_file(tmp_path: Path, damage: str, message: str) -> None:
    images, labels = _clean()
    root = write_npy_c(tmp_path, "CIFAR-10-C", images, labels, corruptions=("fog",))
    path = root / "fog.npy"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        truncate(path, path.stat().st_size - 1000)
    elif damage == "header":
        truncate(path, 40)
    elif damage == "dtype":
        np.save(path, np.zeros((60, 32, 32, 3), np.float32))
    elif damage == "rows":
        np.save(path, np.zeros((55, 32, 32, 3), np.uint8))
    elif damage == "size":
        np.save(path, np.zeros((60, 16, 16, 3), np.uint8))
    with pytest.raises(CorruptedSetError, match=message):
        NpyCorruptions(root, image_shape=(32, 32, 3)).images("fog", 1)


def test_labels_that_disagree_across_severities_are_refused(tmp_path: Path) -> None:
    images, labels = _clean()
    root = write_npy_c(tmp_path, "CIFAR-100-C", images, labels, corruptions=("fog",))
    tiled = np.load(root / "labels.npy")
    tiled[3 * 12 + 5] += 1  # one label of severity 4
    np.save(root / "labels.npy", tiled)
    with pytest.raises(CorruptedSetError, match=r"labels\.npy: the labels of severities \[4\]"):
        NpyCorruptions(root)
    np.save(root / "labels.npy", tiled[:-1])
    with pytest.raises(CorruptedSetError, match=r"59 labels is not 5 severities"):
        NpyCorruptions(root)
    (root / "labels.npy").unlink()
    with pytest.raises(CorruptedSetError, match=r"labels\.npy nor corruption folders"):
        detect_layout(_empty(tmp_path))
    with pytest.raises(CorruptedSetError, match=r"labels\.npy: file not found"):
        NpyCorruptions(root)


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty-C"
    folder.mkdir()
    (folder / "README").write_text("nothing")
    return folder


def test_tree_labels_follow_sorted_class_list_and_ignore_frost_defect(tmp_path: Path) -> None:
    extra = [f"n0{k:07d}" for k in range(5)]
    root = write_tree_c(tmp_path, "Tiny-ImageNet-C", WNIDS, n_per_class=2, size=64,
                        corruptions=("frost", "fog"), severities=(2,), defect_wnids=tuple(extra))
    assert detect_layout(root) == "tree"
    classes = sorted(WNIDS)
    tree = TreeCorruptions(root, classes=classes)
    for corruption in ("frost", "fog"):
        paths, labels = tree.files(corruption, 2)
        assert len(paths) == 6  # the 5 extra frost folders are ignored
        assert [Path(p).parent.name for p in paths] == [classes[i] for i in labels]
        dataset = ImageFileDataset(paths, labels, (3, 64, 64))
        for i in range(len(dataset)):
            image, label = dataset[i]
            wnid = classes[label]
            assert image.shape == (3, 64, 64)
            assert image.double().mean().item() == pytest.approx(
                class_level(WNIDS.index(wnid), len(WNIDS)), abs=3)
    # without a class list the folder names are taken, and the 8 frost folders are refused
    with pytest.raises(CorruptedSetError, match=r"frost/2: 8 class folders but the model has 3"):
        TreeCorruptions(root, num_classes=3).files("frost", 2)
    assert len(TreeCorruptions(root, num_classes=3).files("fog", 2)[0]) == 6


def test_tree_missing_class_folder_and_wrong_size_are_named(tmp_path: Path) -> None:
    root = write_tree_c(tmp_path, "ImageNet-C", WNIDS, n_per_class=1, size=32,
                        corruptions=("fog",), severities=(1,))
    with pytest.raises(CorruptedSetError, match=r"fog/3: folder not found"):
        TreeCorruptions(root, num_classes=3).files("fog", 3)
    with pytest.raises(CorruptedSetError, match=r"fog/1: 1 class folder\(s\) missing"):
        TreeCorruptions(root, classes=[*WNIDS, "n00000001"]).files("fog", 1)
    paths, labels = TreeCorruptions(root, num_classes=3).files("fog", 1)
    with pytest.raises(CorruptedSetError, match=r"\.JPEG: image is 32x32, expected 64x64"):
        ImageFileDataset(paths, labels, (3, 64, 64))[0]
