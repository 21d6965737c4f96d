"""OOD sets: ODIN noise per index, natural crops, image folders / lists, SVHN .mat, resizing."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from torchvision.transforms import functional as tf

from ood.datasets import (
    fit_to_input,
    from_array,
    gaussian,
    image_folder,
    image_list,
    natural_crops,
    svhn_mat,
    to_channels,
    uniform,
)


def picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_noise_is_odin_s_definition_drawn_per_index():
    # Image i of seed s is default_rng([s, kind, stream, i]): kind 1 = uniform, 2 = gaussian.
    few, many = uniform(3, 3, (4, 5), seed=7), uniform(6, 3, (4, 5), seed=7)
    assert torch.equal(few.images, many.images[:3])
    expected = np.random.default_rng([7, 1, 0, 2]).random((3, 4, 5))
    assert np.array_equal(many.images[2].numpy(), expected.astype(np.float32))
    noisy = gaussian(2, 1, (3, 3), seed=7)
    expected = np.clip(np.random.default_rng([7, 2, 0, 1]).normal(0.5, 1.0, (1, 3, 3)), 0, 1)
    assert np.array_equal(noisy.images[1].numpy(), expected.astype(np.float32))
    assert not torch.equal(uniform(2, 1, (4, 4), seed=7, stream=1).images,
                           uniform(2, 1, (4, 4), seed=7).images)


@pytest.mark.parametrize("make", [uniform, gaussian, natural_crops])
def test_lazy_generation_gives_the_same_images_and_survives_pickling(make):
    eager = make(5, 3, (6, 6), seed=2)
    lazy = pickle.loads(pickle.dumps(make(5, 3, (6, 6), seed=2, lazy=True).dataset))
    assert torch.equal(eager.images, torch.stack([lazy[i][0] for i in range(5)]))
    assert lazy[4][1] == -1


def test_noise_distributions():
    flat = uniform(200, 3, (8, 8), seed=0).images.flatten().numpy()
    assert flat.min() >= 0 and flat.max() < 1 and abs(flat.mean() - 0.5) < 0.01
    flat = gaussian(200, 3, (8, 8), seed=0).images.flatten().numpy()
    # N(0.5, 1) clipped: P(x <= 0) = P(x >= 1) = Phi(-0.5) = 0.3085
    assert abs((flat == 0).mean() - 0.3085) < 0.01 and abs((flat == 1).mean() - 0.3085) < 0.01


def test_natural_crops_are_deterministic_quantized_and_not_flat():
    crops = natural_crops(40, 1, (8, 8), seed=0, levels=17)
    assert crops.images.shape == (40, 1, 8, 8) and crops.images.dtype == torch.float32
    assert torch.equal(crops.images[:10], natural_crops(10, 1, (8, 8), seed=0,
                                                        levels=17).images)
    levels = crops.images.numpy() * 16
    assert np.allclose(levels, np.round(levels), atol=1e-5)  # the digits' 0..16 grey scale
    spread = crops.images.std(dim=(1, 2, 3))
    assert (spread > 0).float().mean() >= 0.9  # mostly textured (a patch of sky may be flat)
    rgb = natural_crops(5, 3, (16, 12), seed=1)
    assert rgb.images.shape == (5, 3, 16, 12)
    assert rgb.images.min() >= 0 and rgb.images.max() <= 1


def test_grey_conversion_matches_pil():
    rng = np.random.default_rng(0)
    pixels = picture(rng, 6, 7)
    ours = to_channels(torch.from_numpy(pixels).permute(2, 0, 1)[None], 1, "x")[0, 0]
    assert np.array_equal(ours.numpy(), np.asarray(Image.fromarray(pixels).convert("L")))
    grey = torch.from_numpy(pixels[..., 0])[None, None]
    assert torch.equal(to_channels(grey, 3, "x")[0], grey[0].expand(3, -1, -1))


def test_image_folder_reads_recursively_in_sorted_order_and_skips_hidden(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "LSUN_resize"
    expected = {}
    for relative in ("test/b.png", "test/a.png", "extra/c.jpeg.png", "z.PNG"):
        expected[relative] = picture(rng, 8, 8)
        write_png(root / relative, expected[relative])
    write_png(root / ".hidden" / "d.png", picture(rng, 8, 8))
    write_png(root / "test" / ".e.png", picture(rng, 8, 8))
    (root / "notes.txt").write_text("not an image")
    folder = image_folder(root, 3, (8, 8))
    assert len(folder) == 4 and folder.name == "LSUN_resize"
    order = ["extra/c.jpeg.png", "test/a.png", "test/b.png", "z.PNG"]
    for index, relative in enumerate(order):
        image, label = folder.dataset[index]
        assert label == -1
        assert np.array_equal(image.permute(1, 2, 0).numpy(), expected[relative])
    grey = image_folder(root, 1, (8, 8)).dataset[1][0]
    assert np.array_equal(grey[0].numpy(),
                          np.asarray(Image.fromarray(expected["test/a.png"]).convert("L")))


def test_size_mismatch_is_an_error_unless_a_resize_mode_is_chosen(tmp_path):
    rng = np.random.default_rng(2)
    pixels = picture(rng, 40, 48)
    write_png(tmp_path / "big" / "x.png", pixels)
    with pytest.raises(ValueError, match=r"x.png: image is 40x48 but the model takes 32x32"):
        image_folder(tmp_path / "big", 3, (32, 32))
    pil = Image.fromarray(pixels)
    cases = {
        "resize": tf.resize(pil, [32, 32]),
        "center_crop": tf.center_crop(pil, [32, 32]),
        "resize_center_crop": tf.center_crop(tf.resize(pil, 32), [32, 32]),
        "imagenet": tf.center_crop(tf.resize(pil, 37), [32, 32]),  # round(32 * 256 / 224) = 37
    }
    for mode, reference in cases.items():
        image = image_folder(tmp_path / "big", 3, (32, 32), resize=mode).dataset[0][0]
        assert np.array_equal(image.permute(1, 2, 0).numpy(), np.asarray(reference)), mode
    with pytest.raises(ValueError, match="smaller than the 64x64 crop"):
        image_folder(tmp_path / "big", 3, (64, 64), resize="center_crop")
    with pytest.raises(ValueError, match="unknown resize mode"):
        image_folder(tmp_path / "big", 3, (32, 32), resize="stretch")


def test_openood_image_list(tmp_path):
    rng = np.random.default_rng(3)
    images_root = tmp_path / "images_classic"
    first, second = picture(rng, 8, 8), picture(rng, 8, 8)
    write_png(images_root / "tin" / "test" / "n01 x.png", first)  # a space in the file name
    write_png(images_root / "svhn" / "test" / "2.png", second)
    listing = tmp_path / "benchmark_imglist" / "cifar10" / "test_mix.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("svhn/test/2.png -1\n\ntin/test/n01 x.png -1\n")
    listed = image_list(listing, images_root, 3, (8, 8))
    assert len(listed) == 2 and listed.name == "test_mix"
    assert np.array_equal(listed.dataset[0][0].permute(1, 2, 0).numpy(), second)
    assert np.array_equal(listed.dataset[1][0].permute(1, 2, 0).numpy(), first)
    listing.write_text("svhn/test/2.png\n")
    with pytest.raises(ValueError, match=r"line 1: expected 'relative/path label'"):
        image_list(listing, images_root, 3, (8, 8))
    listing.write_text("svhn/test/missing.png -1\n")
    with pytest.raises(ValueError, match=r"line 1: .*missing.png not found"):
        image_list(listing, images_root, 3, (8, 8))


def test_svhn_mat_in_the_released_layout(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)  # (H, W, C, N), as released
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.arange(1, 6).reshape(5, 1)})
    svhn = svhn_mat(tmp_path / "test_32x32.mat", 3, (32, 32))
    assert svhn.images.shape == (5, 3, 32, 32) and svhn.images.dtype == torch.uint8
    assert np.array_equal(svhn.images[3].permute(1, 2, 0).numpy(), x[..., 3])
    small = svhn_mat(tmp_path / "test_32x32.mat", 1, (16, 16), resize="resize")
    assert small.images.shape == (5, 1, 16, 16)
    savemat(tmp_path / "other.mat", {"X": np.zeros((4, 4))})
    with pytest.raises(ValueError, match=r"other.mat: expected 'X' as uint8 \(H, W, 3, N\)"):
        svhn_mat(tmp_path / "other.mat", 3, (32, 32))
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match=r"junk.mat: not a readable SVHN \.mat file"):
        svhn_mat(tmp_path / "junk.mat", 3, (32, 32))


def test_arrays_and_subsets():
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    made = from_array("other", images, "memory", 3, (4, 4))
    assert torch.equal(made.subset([4, 1]).images, images[[4, 1]])
    with pytest.raises(ValueError, match="uint8"):
        from_array("other", images.float(), "memory", 3, (4, 4))
    resized = fit_to_input(images, (2, 2), "resize", "memory")
    assert resized.shape == (6, 3, 2, 2)
