"""A fixed list of ImageNet val images (`--subset-file`, `[dataset] subset = "robustbench"`):
exactly the listed images, in the list's order, labels from the wnid folders; a clear error for
an entry that does not resolve; the list's content in the data identity and its name in the
provenance."""

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

import benchmark.readers as readers
from benchmark.archs import build_arch
from benchmark.cli import main
from benchmark.data import stratified_subset
from benchmark.datasets import DATASETS, load_dataset
from benchmark.errors import DataError
from benchmark.readers import read_image_list, read_imagenet_val
from benchmark.runner import prepare_data
from benchmark.suites import load_suite
from reports.leaderboard import provenance

WNIDS = ["n04592741", "n01440764", "n02102040"]
# 7 of the 12 fixture images (4 per class), neither sorted by class nor by file
LISTED = ["n02102040/ILSVRC2012_val_00000011.JPEG", "n01440764/ILSVRC2012_val_00000006.JPEG",
          "n04592741/ILSVRC2012_val_00000002.JPEG", "n01440764/ILSVRC2012_val_00000005.JPEG",
          "n02102040/ILSVRC2012_val_00000009.JPEG", "n04592741/ILSVRC2012_val_00000004.JPEG",
          "n01440764/ILSVRC2012_val_00000008.JPEG"]
SUITE = """name = "imagenet3"
version = "1"
[dataset]
name = "imagenet"
split = "val"
{subset}
[model_defaults]
num_classes = 3
input_size = [224, 224]
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
[run]
batch_size = 64
[tasks.clean]
"""


def tree(directory: Path) -> Path:
    """ImageNet val with 3 classes x 4 images: `<directory>/val/<wnid>/ILSVRC2012_val_*.JPEG`."""
    return write_imagenet_val(directory, WNIDS, n_per_class=4, seed=2, size=260)


def write_list(path: Path, entries: list[str], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(newline.join(entries).encode())
    return path


def expected_labels(entries: list[str]) -> list[int]:
    return [sorted(WNIDS).index(entry.split("/")[0]) for entry in entries]


@pytest.fixture
def three_classes(monkeypatch):
    """The ImageNet reader for a 3-class fixture tree (the real one wants 1,000 folders)."""
    monkeypatch.setitem(DATASETS, "imagenet", dataclasses.replace(
        DATASETS["imagenet"], reader=functools.partial(read_imagenet_val, num_classes=3)))


def test_a_subset_list_is_read_in_its_own_order_with_the_folders_labels(tmp_path):
    root = tree(tmp_path)
    assert all((root / entry).is_file() for entry in LISTED)
    # CRLF line ends, a blank line, surrounding spaces: as such files come
    listed = write_list(tmp_path / "list.txt", [LISTED[0], "", *[f" {e} " for e in LISTED[1:]]],
                        newline="\r\n")
    image_list = read_image_list(listed)
    assert image_list.entries == tuple(LISTED)
    assert image_list.describe() == "list.txt (7)"
    data = read_imagenet_val(root, num_classes=3, image_list=image_list)
    assert data.dataset.paths == [str(root / entry) for entry in LISTED]
    assert data.labels.tolist() == expected_labels(LISTED) == [1, 0, 2, 0, 1, 2, 0]
    assert data.image_list == image_list
    reference = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    for position in (0, 3, 6):
        image, label = data.dataset[position]
        with Image.open(root / LISTED[position]) as original:
            assert torch.equal(image, reference(original.convert("RGB")))
        assert label == expected_labels(LISTED)[position]
    # a list that does not hold every class still needs all class folders for its labels
    partial = tmp_path / "partial" / "val"
    partial.mkdir(parents=True)
    (partial / WNIDS[0]).symlink_to(root / WNIDS[0])
    with pytest.raises(DataError, match="1 class folders but the model has 3 classes"):
        read_imagenet_val(partial, num_classes=3, image_list=image_list)


def test_an_entry_that_does_not_resolve_names_the_file_and_the_first_such_entry(tmp_path):
    root = tree(tmp_path)
    entries = [*LISTED[:2], "n01440764/ILSVRC2012_val_00000099.JPEG", *LISTED[2:],
               "n09999999/ILSVRC2012_val_00000001.JPEG"]
    listed = write_list(tmp_path / "lists" / "mine.txt", entries)
    with pytest.raises(DataError) as error:
        read_imagenet_val(root, num_classes=3, image_list=read_image_list(listed))
    message = str(error.value)
    assert message.startswith(f"{listed}: entry 3 of 9, "
                              "'n01440764/ILSVRC2012_val_00000099.JPEG', is not an image under")
    assert str(root / "n01440764" / "ILSVRC2012_val_00000099.JPEG") in message
    unknown_class = write_list(tmp_path / "other.txt", [LISTED[0], entries[-1]])
    with pytest.raises(DataError, match="entry 2 of 2, 'n09999999/"):
        read_imagenet_val(root, num_classes=3, image_list=read_image_list(unknown_class))
    for bad, why in (([LISTED[0], "/abs/n01440764/x.JPEG"], "line 2: .* not a relative path"),
                     (["../val/n01440764/x.JPEG"], "line 1: .* not a relative path"),
                     (["ILSVRC2012_val_00000001.JPEG"], "line 1: .* not a relative path"),
                     ([LISTED[0], LISTED[1], LISTED[0]], "line 3: .* listed twice .* line 1"),
                     (["", " "], "names no image")):
        with pytest.raises(DataError, match=why):
            read_image_list(write_list(tmp_path / "bad.txt", bad))
    with pytest.raises(DataError, match="cannot read the subset list"):
        read_image_list(tmp_path / "missing.txt")


def test_robustbench_list_comes_from_the_installed_package_without_importing_it(
        tmp_path, monkeypatch):
    package = tmp_path / "site" / "robustbench"
    write_list(package / "helper_files" / "imagenet_test_image_ids.txt", LISTED[::-1])
    (package / "__init__.py").write_text("raise RuntimeError('robustbench was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    image_list = read_image_list("robustbench")
    assert image_list.entries == tuple(LISTED[::-1])
    assert image_list.describe() == "robustbench imagenet_test_image_ids.txt (7)"
    assert image_list.source == str(package / "helper_files" / "imagenet_test_image_ids.txt")
    suite_file = tmp_path / "suite.toml"
    suite_file.write_text(SUITE.format(subset='subset = "robustbench"'))
    tree(tmp_path / "data" / "imagenet")
    monkeypatch.setitem(DATASETS, "imagenet", dataclasses.replace(
        DATASETS["imagenet"], reader=functools.partial(read_imagenet_val, num_classes=3)))
    data = prepare_data(load_suite(str(suite_file)), tmp_path / "data", 0, 0)
    assert data.labels.tolist() == expected_labels(LISTED[::-1])


def test_robustbench_not_installed_says_how_to_get_the_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(readers, "_package_folders", lambda name: [])
    with pytest.raises(DataError, match=r"pip install robustbench .* --subset-file FILE"):
        read_image_list("robustbench")
    suite_file = tmp_path / "suite.toml"
    suite_file.write_text(SUITE.format(subset='subset = "robustbench"'))
    (tmp_path / "zoo").mkdir()
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite_file), "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 2
    assert "which is not installed: pip install robustbench" in capsys.readouterr().err
    empty = tmp_path / "empty_site" / "robustbench"
    empty.mkdir(parents=True)
    monkeypatch.setattr(readers, "_package_folders", lambda name: [str(empty)])
    with pytest.raises(DataError, match=r"has no helper_files/imagenet_test_image_ids\.txt"):
        read_image_list("robustbench")


def test_suite_subset_paths_and_data_sets_that_take_none(tmp_path):
    suite_file = tmp_path / "suites" / "s.toml"
    suite_file.parent.mkdir()
    suite_file.write_text(SUITE.format(subset='subset = "lists/mine.txt"'))
    assert load_suite(str(suite_file)).dataset["subset"] == str(tmp_path / "suites" / "lists"
                                                                / "mine.txt")
    suite_file.write_text(SUITE.format(subset=f'subset = "{tmp_path / "abs.txt"}"'))
    assert load_suite(str(suite_file)).dataset["subset"] == str(tmp_path / "abs.txt")
    assert load_suite("imagenet").dataset["subset"] is None
    image_list = read_image_list(write_list(tmp_path / "l.txt", LISTED))
    with pytest.raises(DataError, match=r"applies only to data sets read from image folders "
                                        r"\(imagenet\)"):
        load_dataset("digits", "test", None, None, image_list)


def test_evaluate_with_a_subset_file_limit_identity_and_provenance(tmp_path, capsys,
                                                                   three_classes):
    tree(tmp_path / "data" / "imagenet")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    torch.manual_seed(0)
    save_file(build_arch("tinynets:pooled_cnn", num_classes=3).state_dict(),
              zoo / "net.safetensors")
    (zoo / "net.toml").write_text('arch = "tinynets:pooled_cnn"\n')
    suite_file = tmp_path / "suite.toml"
    suite_file.write_text(SUITE.format(subset=""))

    def evaluate(listed: Path, *extra: str) -> pd.DataFrame:
        assert main(["evaluate", str(zoo), "--suite", str(suite_file), "--data-root",
                     str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--no-progress",
                     "--subset-file", str(listed), *extra]) == 0
        return pd.read_csv(tmp_path / "out" / "results.csv")

    results = evaluate(write_list(tmp_path / "a.txt", LISTED))
    assert set(results.subset) == {"a.txt (7)"} and set(results.n_data) == {7}
    assert set(results.preprocessing) == {"Resize(256, bilinear) -> CenterCrop(224)"}
    assert "7 images (limit 0)" in provenance(results) and "Subset: a.txt (7)." in \
        provenance(results)
    # the same images with two same-class entries swapped: same labels, another list
    swapped = LISTED.copy()
    swapped[1], swapped[3] = swapped[3], swapped[1]
    assert expected_labels(swapped) == expected_labels(LISTED)
    capsys.readouterr()
    evaluate(write_list(tmp_path / "b.txt", swapped))
    assert "1 task result(s) computed, 0 reused" in capsys.readouterr().out
    evaluate(write_list(tmp_path / "again.txt", LISTED))  # same content, other file name
    assert "0 task result(s) computed, 1 reused" in capsys.readouterr().out
    # --limit takes a seeded class-stratified subset of the listed images, in the list's order
    results = evaluate(tmp_path / "a.txt", "--limit", "3")
    assert set(results.n_data) == {3} and set(results.limit) == {3}
    chosen = stratified_subset(np.array(expected_labels(LISTED)), 3, 0)
    suite = load_suite(str(suite_file))
    suite = dataclasses.replace(suite, dataset={**suite.dataset,
                                                "subset": str(tmp_path / "a.txt")})
    limited = prepare_data(suite, tmp_path / "data", 3, 0)
    paths = [limited.dataset.dataset.paths[i] for i in limited.dataset.indices]
    root = tmp_path / "data" / "imagenet" / "val"
    assert paths == [str(root / LISTED[i]) for i in sorted(chosen)]
    assert limited.labels.tolist() == [expected_labels(LISTED)[i] for i in sorted(chosen)]
