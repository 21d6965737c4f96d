"""Readers of the released data formats: pixel layout, labels, class mapping, transforms, safety."""

from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import (
    cifar_planted_pixel,
    cifar_step,
    class_level,
    write_cifar10,
    write_cifar100,
    write_imagenet_val,
    write_tinyimagenet,
)
from PIL import Image
from torchvision import transforms

from benchmark.errors import DataError
from benchmark.readers import (
    read_cifar10,
    read_cifar100,
    read_imagenet_val,
    read_tinyimagenet,
)

TINY_WNIDS = ["n09999999", "n01443537", "n04067472", "n02123045"]  # wnids.txt order, unsorted


def _trusted_load(path: Path) -> dict:
    """Load a pickle this test session wrote itself."""
    with path.open("rb") as file:
        return pickle.load(file, encoding="bytes")


def _dump(path: Path, obj: object) -> None:
    with path.open("wb") as file:
        pickle.dump(obj, file, protocol=2)


def _assert_labels_follow_brightness(images: torch.Tensor, labels: np.ndarray, step: int) -> None:
    """Fixture images have mean about 24.5 + step * label: the labels must sit with their images."""
    means = images.double().mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_array_equal(np.rint((means - 24.5) / step).astype(int), labels)


# --- CIFAR -------------------------------------------------------------------------------------

def test_cifar10_test_split_pixel_layout_and_labels(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, n_train_per_batch=4, n_test=12, seed=1)
    data = read_cifar10(root)
    raw = _trusted_load(root / "test_batch")
    assert (data.name, data.num_classes, data.source) == ("cifar10", 10, str(root))
    assert data.images.dtype == torch.uint8 and data.images.shape == (12, 3, 32, 32)
    np.testing.assert_array_equal(data.labels, raw[b"labels"])
    assert data.labels.dtype == np.int64
    for i, image in enumerate(data.images):
        flat = int(torch.argmax(image))
        assert np.unravel_index(flat, (3, 32, 32)) == cifar_planted_pixel(i)
        assert image.max() == 255 and (image == 255).sum() == 1
    channel, row, col = 2, 17, 5
    expected = raw[b"data"][:, channel * 1024 + row * 32 + col]
    np.testing.assert_array_equal(data.images[:, channel, row, col].numpy(), expected)
    _assert_labels_follow_brightness(data.images, data.labels, cifar_step(10))
    images, labels = next(data.batches(5))
    assert images.dtype == torch.float32 and float(images.max()) == 1.0
    assert labels.tolist() == raw[b"labels"][:5]


def test_cifar10_train_split_concatenates_batches_in_order(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, n_train_per_batch=4, n_test=3, seed=2)
    data = read_cifar10(root, split="train")
    raws = [_trusted_load(root / f"data_batch_{k}") for k in range(1, 6)]
    assert len(data) == 20
    np.testing.assert_array_equal(data.labels, [label for raw in raws for label in raw[b"labels"]])
    np.testing.assert_array_equal(data.images[12].reshape(-1).numpy(), raws[3][b"data"][0])


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    root = write_cifar100(tmp_path, n_train=8, n_test=150, seed=3)
    data = read_cifar100(root)
    raw = _trusted_load(root / "test")
    assert (data.name, data.num_classes, len(data)) == ("cifar100", 100, 150)
    np.testing.assert_array_equal(data.labels, raw[b"fine_labels"])
    assert data.labels.max() == 99
    _assert_labels_follow_brightness(data.images, data.labels, cifar_step(100))
    assert len(read_cifar100(root, split="train")) == 8


def test_cifar_fixture_is_written_like_python2_cpickle(tmp_path: Path) -> None:
    payload = (write_cifar10(tmp_path, 2, 2) / "test_batch").read_bytes()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(payload)]
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    assert not any(name == "GLOBAL" and "codecs" in arg for name, arg in ops)
    assert not any(name in ("BINUNICODE", "BINBYTES", "SHORT_BINBYTES") for name, _ in ops)


def test_cifar_reads_python3_protocol2_pickles(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, 2, 6, seed=4)
    before = read_cifar10(root)
    _dump(root / "test_batch", _trusted_load(root / "test_batch"))
    assert b"_codecs" in (root / "test_batch").read_bytes()
    after = read_cifar10(root)
    assert torch.equal(before.images, after.images)
    np.testing.assert_array_equal(before.labels, after.labels)


def test_cifar_accepts_the_parent_folder(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, 2, 3)
    assert read_cifar10(tmp_path).source == str(root)


class _MakesDirectory:
    """Unpickling this runs os.mkdir(path): a stand-in for arbitrary code in a hostile file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.path),)


def test_malicious_cifar_pickle_is_refused_without_running(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path, 2, 3)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _MakesDirectory(marker), b"labels": [0]}, protocol=2)
    (root / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match="refused") as error:
        read_cifar10(root)
    assert str(root / "test_batch") in str(error.value) and "mkdir" in str(error.value)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is armed: a plain unpickler runs it
    assert marker.exists()


def _replace_test_batch(root: Path, **changes: object) -> None:
    batch = _trusted_load(root / "test_batch")
    batch.update({key.encode(): value for key, value in changes.items()})
    _dump(root / "test_batch", batch)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda root: (root / "test_batch").unlink(), r"file not found.*cifar-10-python\.tar\.gz"),
    (lambda root: (root / "test_batch").write_bytes(b"not a pickle"), "not a readable"),
    (lambda root: (root / "test_batch").write_bytes(pickle.dumps([1, 2], protocol=2)),
     "expected a pickled dict"),
    (lambda root: _replace_test_batch(root, data=np.zeros((4, 3000), np.uint8)), "shape"),
    (lambda root: _replace_test_batch(root, data=np.zeros((4, 3072), np.float32)), "uint8"),
    (lambda root: _replace_test_batch(root, labels=[0, 1, 2]), "4 images but 3"),
    (lambda root: _replace_test_batch(root, labels=[0, 1, 2, 10]), "outside"),
    (lambda root: _replace_test_batch(root, labels=["a", "b", "c", "d"]), "list of integers"),
])
def test_malformed_cifar_batch_names_the_file(tmp_path: Path, damage, message: str) -> None:
    root = write_cifar10(tmp_path, 2, 4)
    damage(root)
    with pytest.raises(DataError, match=message) as error:
        read_cifar10(root)
    assert str(root / "test_batch") in str(error.value)


def test_cifar_missing_folder_and_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-100-python\.tar\.gz") as error:
        read_cifar100(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)
    with pytest.raises(DataError, match="unknown split 'val'"):
        read_cifar10(write_cifar10(tmp_path, 2, 2), split="val")


# --- Tiny-ImageNet -----------------------------------------------------------------------------

def _annotated_wnids(root: Path) -> list[str]:
    lines = (root / "val" / "val_annotations.txt").read_text().splitlines()
    return [line.split("\t")[1] for line in lines]


def test_tinyimagenet_labels_are_sorted_wnid_positions(tmp_path: Path) -> None:
    root = write_tinyimagenet(tmp_path, TINY_WNIDS, n_per_class=3, seed=5)
    data = read_tinyimagenet(root)
    assert (data.name, data.num_classes, data.source) == ("tinyimagenet", 4, str(root))
    assert data.images.dtype == torch.uint8 and data.images.shape == (12, 3, 64, 64)
    sorted_wnids = sorted(TINY_WNIDS)
    annotated = _annotated_wnids(root)
    assert [sorted_wnids[label] for label in data.labels] == annotated
    levels = [class_level(TINY_WNIDS.index(wnid), len(TINY_WNIDS)) for wnid in annotated]
    means = data.images.double().mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(means, levels, atol=3)
    gray = data.images[0]  # the fixture's grayscale JPEG, expanded to three equal channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert not torch.equal(data.images[1][0], data.images[1][2])


def test_tinyimagenet_reads_val_rearranged_into_wnid_folders(tmp_path: Path) -> None:
    root = write_tinyimagenet(tmp_path, TINY_WNIDS, n_per_class=2, seed=6)
    before = read_tinyimagenet(root)
    images = root / "val" / "images"
    for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
        filename, wnid = line.split("\t")[:2]
        (images / wnid).mkdir(exist_ok=True)
        (images / filename).rename(images / wnid / filename)
    after = read_tinyimagenet(root)
    assert torch.equal(before.images, after.images)
    np.testing.assert_array_equal(before.labels, after.labels)


def _write_annotation(root: Path, line: str) -> Path:
    annotations = root / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + line)
    return annotations


@pytest.mark.parametrize(("damage", "culprit", "message"), [
    (lambda root: (root / "wnids.txt").unlink(), "wnids.txt", r"tiny-imagenet-200\.zip"),
    (lambda root: _write_annotation(root, "val_0.JPEG\tn07777777\t0\t0\t9\t9\n"),
     "val/val_annotations.txt", "n07777777"),
    (lambda root: _write_annotation(root, "val_99.JPEG\tn01443537\t0\t0\t9\t9\n"),
     "val/images/val_99.JPEG", "not found"),
    (lambda root: _write_annotation(root, "val_0.JPEG n01443537\n"),
     "val/val_annotations.txt", "line 9"),
    (lambda root: (root / "val" / "images" / "val_3.JPEG").write_bytes(b"\xff\xd8junk"),
     "val/images/val_3.JPEG", "unreadable image"),
    (lambda root: Image.new("RGB", (32, 64)).save(root / "val" / "images" / "val_2.JPEG"),
     "val/images/val_2.JPEG", "32x64"),
])
def test_malformed_tinyimagenet_names_the_file(tmp_path: Path, damage, culprit: str,
                                               message: str) -> None:
    root = write_tinyimagenet(tmp_path, TINY_WNIDS, n_per_class=2)
    damage(root)
    with pytest.raises(DataError, match=message) as error:
        read_tinyimagenet(root)
    assert str(root / culprit) in str(error.value)


def test_tinyimagenet_missing_folder_and_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"tiny-imagenet-200\.zip"):
        read_tinyimagenet(tmp_path / "nowhere")
    with pytest.raises(DataError, match="unknown Tiny-ImageNet split 'test'"):
        read_tinyimagenet(write_tinyimagenet(tmp_path, TINY_WNIDS, 1), split="test")


# --- ImageNet val ------------------------------------------------------------------------------

IMAGENET_WNIDS = ["n04592741", "n01440764", "n02102040"]


def test_imagenet_labels_follow_sorted_folders(tmp_path: Path) -> None:
    root = write_imagenet_val(tmp_path, IMAGENET_WNIDS, n_per_class=2, seed=7, size=280)
    data = read_imagenet_val(root, num_classes=3)
    assert (data.name, data.num_classes, data.source, data.images) == (
        "imagenet", 3, str(root), None)
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1, 2, 2])
    expected = np.repeat([class_level(IMAGENET_WNIDS.index(w), 3) / 255
                          for w in sorted(IMAGENET_WNIDS)], 2)
    for images, labels in data.batches(4):
        assert images.shape[1:] == (3, 224, 224) and images.dtype == torch.float32
        assert labels.dtype == torch.int64
    means = [float(data.dataset[i][0].mean()) for i in range(len(data))]
    np.testing.assert_allclose(means, expected, atol=0.04)
    with pytest.raises(DataError, match="3 class folders but the model has 1000 classes"):
        read_imagenet_val(root)  # a partial ImageNet would shift every label


def test_imagenet_transform_matches_torchvision(tmp_path: Path) -> None:
    root = write_imagenet_val(tmp_path, IMAGENET_WNIDS[:2], n_per_class=2, seed=8, size=300)
    data = read_imagenet_val(root, num_classes=2)
    reference = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    files = sorted(root.glob("*/*.JPEG"))
    sizes, modes = set(), set()
    for index, path in enumerate(files):
        image, label = data.dataset[index]
        with Image.open(path) as original:
            sizes.add(original.size)
            modes.add(original.mode)
            assert torch.equal(image, reference(original.convert("RGB")))
        assert label == sorted(IMAGENET_WNIDS[:2]).index(path.parent.name)
    assert len(sizes) == len(files) and all(w != h for w, h in sizes) and "L" in modes


def test_imagenet_file_selection(tmp_path: Path) -> None:
    root = write_imagenet_val(tmp_path, IMAGENET_WNIDS[:2], n_per_class=1, size=260)
    picture = Image.new("RGB", (300, 260), (10, 200, 30))
    first = root / sorted(IMAGENET_WNIDS[:2])[0]
    for name in ("b.png", "c.jpeg", "d.JPG", "e.Png"):
        picture.save(first / name)
    (first / "notes.txt").write_text("not an image")
    picture.save(first / "._a.JPEG", format="JPEG")
    (root / ".ipynb_checkpoints").mkdir()
    data = read_imagenet_val(root, num_classes=2)
    paths = [Path(path).name for path in data.dataset.paths]
    assert paths == ["ILSVRC2012_val_00000002.JPEG", "b.png", "c.jpeg", "d.JPG", "e.Png",
                     "ILSVRC2012_val_00000001.JPEG"]
    np.testing.assert_array_equal(data.labels, [0, 0, 0, 0, 0, 1])


def test_malformed_imagenet_names_the_folder_or_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found") as error:
        read_imagenet_val(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="loose images"):
        read_imagenet_val(flat)
    root = write_imagenet_val(tmp_path, IMAGENET_WNIDS, n_per_class=1, size=260)
    with pytest.raises(DataError, match="3 class folders but the model has 2 classes"):
        read_imagenet_val(root, num_classes=2)
    broken = root / IMAGENET_WNIDS[0] / "ILSVRC2012_val_00000001.JPEG"
    broken.write_bytes(b"\xff\xd8 truncated")
    data = read_imagenet_val(root, num_classes=3)
    with pytest.raises(DataError, match="unreadable image") as error:
        data.dataset[2]
    assert str(broken) in str(error.value)
    (root / "n00000000").mkdir()
    with pytest.raises(DataError, match=r"no \.JPEG") as error:
        read_imagenet_val(root, num_classes=4)
    assert str(root / "n00000000") in str(error.value)
