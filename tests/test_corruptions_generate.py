"""Corruption generation: per-image seeding, tables, hand cases, grey images, `materialize`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import benchmark.tasks.corruptions  # noqa: F401  (registers the task)
from benchmark.archs import build_arch
from benchmark.cli import main
from benchmark.corrupt import materialize
from benchmark.datasets import read_digits
from benchmark.errors import DataError
from corruptions.catalog import ALL
from corruptions.generate import corrupt, corrupt_all
from corruptions.released import NpyCorruptions
from corruptions.tables import TABLES, get_table
from corruptions.weather import plasma_fractal, synthetic_frost_textures


def _images(n: int = 6, side: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 220, side)
    base = (ramp[None, :, None, None] + ramp[None, None, :, None]) / 2
    noise = rng.normal(0, 20, (n, side, side, channels))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ALL)
def test_an_images_corruption_depends_only_on_seed_corruption_severity_index(name) -> None:
    images = _images()
    whole = corrupt(images, name, 3, "cifar", seed=5)
    assert whole.shape == images.shape and whole.dtype == np.uint8
    order = np.array([4, 1, 5, 0, 3, 2])
    shuffled = corrupt(images[order], name, 3, "cifar", seed=5, indices=order)
    np.testing.assert_array_equal(shuffled, whole[order])
    single = corrupt(images[2:3], name, 3, "cifar", seed=5, indices=[2])
    np.testing.assert_array_equal(single[0], whole[2])
    if name not in ("brightness", "contrast", "defocus_blur", "zoom_blur", "pixelate",
                    "jpeg_compression", "gaussian_blur", "saturate"):
        other = corrupt(images, name, 3, "cifar", seed=6)
        assert not np.array_equal(other, whole), "the seed must matter for random corruptions"


def test_corrupt_all_does_not_depend_on_batch_size() -> None:
    images = _images(n=5)
    names = ["glass_blur", "snow", "frost"]
    small = {(c, s): out for c, s, out in corrupt_all(images, "cifar", 1, names, (2,), 2)}
    large = {(c, s): out for c, s, out in corrupt_all(images, "cifar", 1, names, (2,), 64)}
    for key, value in small.items():
        np.testing.assert_array_equal(value, large[key])


def test_hand_computed_cases() -> None:
    # contrast, ImageNet severity 1 (c = 0.4), one channel holding 0 and 255: mean 127.5,
    # (0 - 127.5) * 0.4 + 127.5 = 76.5 -> 76 and (255 - 127.5) * 0.4 + 127.5 = 178.5 -> 178
    # (truncation to uint8, as the references).
    image = np.array([[[0], [255]]], np.uint8)[None]  # (1, 1, 2, 1)
    np.testing.assert_array_equal(corrupt(image, "contrast", 1)[0, 0, :, 0], [76, 178])
    # brightness on a grey pixel: HSV value + c; 100 / 255 + 0.5 -> 227.5 -> 227
    grey = np.full((1, 2, 2, 3), 100, np.uint8)
    assert (corrupt(grey, "brightness", 5) == 227).all()
    # saturate of a grey pixel at severity 1 (S * 0.3 + 0) keeps it grey
    np.testing.assert_array_equal(corrupt(grey, "saturate", 1), grey)
    # gaussian noise on mid-grey: std c * 255 = 0.08 * 255 = 20.4 grey levels (ImageNet sev 1)
    mid = np.full((1, 200, 200, 1), 128, np.uint8)
    noisy = corrupt(mid, "gaussian_noise", 1).astype(float)
    assert noisy.std() == pytest.approx(20.4, rel=0.03)
    assert noisy.mean() == pytest.approx(127.5, abs=0.5)  # truncation: -0.5 on average


def test_severity_makes_corruptions_stronger_on_the_cifar_table() -> None:
    images = _images(n=4)
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur",
                 "motion_blur", "zoom_blur", "fog", "contrast", "pixelate",
                 "jpeg_compression", "gaussian_blur"):
        change = [np.abs(corrupt(images, name, s, "cifar").astype(int) - images).mean()
                  for s in (1, 3, 5)]
        assert change[0] < change[1] < change[2], (name, change)


def test_tables_and_scaling_rule() -> None:
    assert TABLES["imagenet"].params("zoom_blur", 5, 224, 224) == pytest.approx(
        np.arange(1, 1.31, 0.03))
    # elastic: fractions of 244 for ImageNet-C's 224 px images, of the side otherwise
    assert TABLES["imagenet"].params("elastic_transform", 1, 224, 224) == pytest.approx(
        (488, 170.8, 24.4))
    assert TABLES["cifar"].params("elastic_transform", 2, 32, 32) == pytest.approx(
        (1.6, 6.4, 2.24))
    eight = get_table("cifar@8")  # lengths x 8 / 32
    assert eight.params("defocus_blur", 5, 8, 8) == pytest.approx((0.375, 0.025))
    assert eight.params("gaussian_blur", 5, 8, 8) == pytest.approx(0.25)
    assert eight.params("glass_blur", 5, 8, 8) == (pytest.approx(0.1), 1, 2)
    assert eight.params("frost", 1, 8, 8) == pytest.approx((1, 0.2, 0.05))
    assert eight.params("gaussian_noise", 5, 8, 8) == TABLES["cifar"].params(
        "gaussian_noise", 5, 32, 32)
    with pytest.raises(ValueError, match="unknown severity table 'svhn'"):
        get_table("svhn")


def test_plasma_and_synthetic_frost() -> None:
    height_map = plasma_fractal(np.random.default_rng(0), 64, 2.0)
    assert height_map.shape == (64, 64) and height_map.min() == 0 and height_map.max() == 1
    textures = synthetic_frost_textures()
    assert len(textures) == 5
    means = [t.mean() for t in textures]
    assert 100 < min(means) < max(means) < 215  # the photographs' range (101-210 levels)
    assert all(t[..., 2].mean() > t[..., 0].mean() for t in textures)  # bluish


def test_grey_8x8_digits_keep_their_shape_and_noise_stays_per_pixel() -> None:
    digits = (read_digits(split="test").images[:20, 0].numpy() * 255).round().astype(np.uint8)
    for name in ALL:
        out = corrupt(digits, name, 5, "cifar@8")
        assert out.shape == digits.shape and out.dtype == np.uint8, name


def _tiny_zoo(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "rubench.toml").write_text(
        'arch = "tinynets:tiny_cnn"\nnum_classes = 10\nmean = [0.3]\nstd = [0.25]\n')
    torch.manual_seed(0)
    torch.save(build_arch("tinynets:tiny_cnn", num_classes=10).state_dict(), folder / "m.pth")


def test_materialize_digits_and_evaluate_it_as_generated(tmp_path: Path) -> None:
    out = materialize("digits", tmp_path / "data", corruptions=["fog", "contrast"],
                      progress=False, batch_size=128)
    assert out == tmp_path / "data" / "digits-C"
    manifest = json.loads((out / "GENERATED.json").read_text())
    assert (manifest["table"], manifest["layout"], manifest["n"]) == ("cifar@8", "npy", 600)
    store = NpyCorruptions(out, image_shape=(8, 8, 1))
    clean = read_digits(split="test")
    np.testing.assert_array_equal(store.test_labels, clean.labels)
    pixels = np.rint(clean.images.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(store.images("fog", 4, np.array([7, 300])),
                                  corrupt(pixels[[7, 300]], "fog", 4, "cifar@8",
                                          indices=[7, 300]))
    # a second call reuses it; other settings are refused
    assert materialize("digits", tmp_path / "data", corruptions=["fog", "contrast"],
                       progress=False) == out
    with pytest.raises(DataError, match=r"not made with these settings.*seed"):
        materialize("digits", tmp_path / "data", corruptions=["fog", "contrast"], seed=1,
                    progress=False)
    _tiny_zoo(tmp_path / "zoo")
    suite = tmp_path / "s.toml"
    suite.write_text('name = "t"\nversion = "1"\n[dataset]\nname = "digits"\n[model_defaults]\n'
                     'input_size = [8, 8]\n[run]\nbatch_size = 600\n[tasks.corruptions]\n'
                     'corruptions = ["fog", "contrast"]\n')
    assert main(["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
                 str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--no-progress",
                 "--limit", "100"]) == 0
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(results.source) == {"generated"}
    assert len(results[results.metric == "top1_err"]) == 10
    assert (results[results.metric == "top1_err"].n == 100).all()


def test_task_generate_option_makes_the_set_once(tmp_path: Path) -> None:
    _tiny_zoo(tmp_path / "zoo")
    suite = tmp_path / "s.toml"
    suite.write_text('name = "t"\nversion = "1"\n[dataset]\nname = "digits"\n[model_defaults]\n'
                     'input_size = [8, 8]\n[run]\nbatch_size = 600\n[tasks.corruptions]\n'
                     'corruptions = ["brightness"]\ngenerate = true\n')
    args = ["evaluate", str(tmp_path / "zoo"), "--suite", str(suite), "--data-root",
            str(tmp_path / "data"), "--no-progress", "--limit", "50"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    made = (tmp_path / "data" / "digits-C" / "GENERATED.json").stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "data" / "digits-C" / "GENERATED.json").stat().st_mtime_ns == made
    # the set holds all 19 corruptions for later selections
    assert len(list((tmp_path / "data" / "digits-C").glob("*.npy"))) == 20
    # a copy made by an older generator is remade (its images changed), then reused again
    manifest_path = tmp_path / "data" / "digits-C" / "GENERATED.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["generator_version"] -= 1
    manifest_path.write_text(json.dumps(manifest))
    stale = np.load(tmp_path / "data" / "digits-C" / "snow.npy")
    stale[:] = 0
    np.save(tmp_path / "data" / "digits-C" / "snow.npy", stale)
    assert main([*args, "--out", str(tmp_path / "c")]) == 0
    remade = json.loads(manifest_path.read_text())
    assert remade["generator_version"] == manifest["generator_version"] + 1
    assert np.load(tmp_path / "data" / "digits-C" / "snow.npy").any()
    made = manifest_path.stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "d")]) == 0
    assert manifest_path.stat().st_mtime_ns == made


def test_corrupt_writes_the_folder_the_suite_reads(tmp_path: Path) -> None:
    """`rubench corrupt --dataset cifar10 --out DIR` then the cifar10 suite's corruptions task
    with --data-root DIR: the task finds the generated copy under the released set's name."""
    from fixtures import write_cifar10

    from benchmark.tasks.corruptions import corrupted_folder

    write_cifar10(tmp_path / "data", n_test=20)
    assert main(["corrupt", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"),
                 "--out", str(tmp_path / "data"), "--corruptions", "contrast",
                 "--no-progress"]) == 0
    made = tmp_path / "data" / "CIFAR-10-C"
    assert (made / "contrast.npy").is_file()
    assert corrupted_folder("cifar10", None, tmp_path / "data") == made


def test_corrupt_never_replaces_a_folder_it_did_not_make(tmp_path: Path) -> None:
    """A released CIFAR-10-C sits where `rubench corrupt` writes by default: never deleted,
    --overwrite or not; --folder writes the copy beside it."""
    released = tmp_path / "data" / "digits-C"
    released.mkdir(parents=True)
    (released / "fog.npy").write_bytes(b"released bytes")
    for overwrite in (False, True):
        with pytest.raises(DataError, match="not made by rubench"):
            materialize("digits", tmp_path / "data", corruptions=["fog"], progress=False,
                        overwrite=overwrite)
    assert (released / "fog.npy").read_bytes() == b"released bytes"
    made = materialize("digits", tmp_path / "data", corruptions=["fog"], progress=False,
                       folder="digits-C-generated")
    assert made.name == "digits-C-generated" and (made / "GENERATED.json").is_file()


def test_overwrite_swaps_in_the_new_copy_and_cleans_abandoned_ones(tmp_path: Path) -> None:
    out = materialize("digits", tmp_path, corruptions=["fog"], progress=False)
    abandoned = tmp_path / ".digits-C.999999999-abcd.partial"  # a killed run's leftovers
    abandoned.mkdir()
    remade = materialize("digits", tmp_path, corruptions=["fog"], seed=3, progress=False,
                         overwrite=True)
    assert remade == out and json.loads((out / "GENERATED.json").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits-C"]
