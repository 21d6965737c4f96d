"""JPEG trees decoded by torchvision's `decode_jpeg`: pixel for pixel PIL's, batched, and named.

Fixtures are photographs from scikit-image, saved by PIL (libjpeg-turbo) at several sizes
(odd ones included: chroma planes with a half block at the edge), qualities and chroma
subsamplings, plus progressive, grey, CMYK and PNG files. No GPU is needed: the CUDA path is
run with `decode_jpeg` replaced by a spy that records the device and decodes on the CPU.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from fixtures_corruptions import truncate
from PIL import Image
from torch.utils.data import Subset
from torchvision.io import ImageReadMode, decode_jpeg

import corruptions.released as released
from benchmark.data import EvalData, decoder_name
from benchmark.readers import IMAGENET_EVAL, ImageFiles
from corruptions.released import CorruptedSetError, ImageFileDataset

PHOTOS = ("astronaut", "chelsea", "coffee")
SIZES = ((224, 224), (64, 64), (37, 53), (201, 300))  # (height, width)
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _photo(name: str, height: int, width: int) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()).resize((width, height),
                                                           Image.Resampling.BILINEAR)


def _pil_pixels(path: Path, mode: str = "RGB") -> torch.Tensor:
    """The (C, H, W) uint8 image of PIL, the reference decoder."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert(mode))
    return torch.from_numpy(pixels.reshape(*pixels.shape[:2], -1).transpose(2, 0, 1).copy())


def _write(folder: Path, name: str, image: Image.Image, **options) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    image.save(path, **options)
    return path


def _tree(root: Path, height: int, width: int) -> list[Path]:
    """`fog/3/<wnid>/*` files of one size: every quality x subsampling of the photos, and a
    progressive, a grey, a CMYK JPEG and a PNG."""
    paths = []
    for number, name in enumerate(PHOTOS):
        photo = _photo(name, height, width)
        folder = root / "fog" / "3" / f"n0{number:07d}"
        for quality in (50, 85, 100):
            for label, subsampling in SUBSAMPLING.items():
                paths.append(_write(folder, f"q{quality}-{label.replace(':', '')}.JPEG", photo,
                                    format="JPEG", quality=quality, subsampling=subsampling))
    odd = root / "fog" / "3" / "n09999999"
    photo = _photo("rocket", height, width)
    paths.append(_write(odd, "progressive.JPEG", photo, format="JPEG", quality=85,
                        progressive=True, optimize=True))
    paths.append(_write(odd, "grey.JPEG", photo.convert("L"), format="JPEG", quality=85))
    paths.append(_write(odd, "cmyk.JPEG", photo.convert("CMYK"), format="JPEG", quality=90))
    paths.append(_write(odd, "png.JPEG", photo, format="PNG"))  # a PNG named like a JPEG
    return paths


def _dataset(paths: list[Path], height: int, width: int, **options) -> ImageFileDataset:
    labels = np.arange(len(paths), dtype=np.int64) % 7
    return ImageFileDataset([str(p) for p in paths], labels, (3, height, width), **options)


class _Spy:
    """Stands in for `decode_jpeg`: records each call's batch size and device, decodes on CPU."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, data: list[torch.Tensor], mode: ImageReadMode, device: torch.device
                 ) -> list[torch.Tensor]:
        self.calls.append((len(data), torch.device(device).type))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(data, mode=mode, device="cpu")


@pytest.mark.parametrize("height, width", SIZES)
def test_decode_jpeg_on_cpu_is_pil_pixel_for_pixel(tmp_path: Path, height: int, width: int
                                                   ) -> None:
    """The measured claim behind the default: same libjpeg-turbo IDCT and chroma upsampling,
    so no pixel differs, at any quality or subsampling, progressive, grey or CMYK."""
    paths = _tree(tmp_path, height, width)
    for path in paths[:-1]:  # the JPEGs
        data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = decode_jpeg(data, mode=ImageReadMode.RGB)
        assert torch.equal(decoded, _pil_pixels(path)), path.name


@pytest.mark.parametrize("height, width", SIZES[1:3])
def test_dataset_decodes_jpegs_with_decode_jpeg_and_pngs_with_pil(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, height: int, width: int) -> None:
    paths = _tree(tmp_path, height, width)
    spy = _Spy()
    monkeypatch.setattr(released, "decode_jpeg", spy)
    dataset = _dataset(paths, height, width)
    for index, path in enumerate(paths):
        image, label = dataset[index]
        assert torch.equal(image, _pil_pixels(path)), path.name
        assert label == index % 7
    assert spy.calls == [(1, "cpu")] * (len(paths) - 1)  # every JPEG, not the PNG
    assert decoder_name(EvalData("c", dataset.labels, 7, "tree", dataset=dataset),
                        "cpu") == "torchvision.io.decode_jpeg (cpu)"


def test_grey_sets_are_decoded_by_pil_because_libjpeg_grey_is_not_pils(tmp_path: Path) -> None:
    """The one named difference: decode_jpeg's grey output of a colour JPEG is its luma plane,
    PIL's is L = (299 R + 587 G + 114 B) / 1000 of the decoded RGB (here 3% of the pixels
    differ, by up to 5 levels), so a grey (C = 1) set is decoded by PIL, and named so."""
    path = _write(tmp_path, "colour.JPEG", _photo("astronaut", 64, 64), format="JPEG",
                  quality=85)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        luma = decode_jpeg(torch.from_numpy(np.fromfile(path, dtype=np.uint8)),
                           mode=ImageReadMode.GRAY)
    pil = _pil_pixels(path, "L")
    differing = (luma != pil).double().mean().item()
    assert 0 < differing < 0.1
    grey = ImageFileDataset([str(path)], np.zeros(1, np.int64), (1, 64, 64), gpu_decode=True)
    assert torch.equal(grey[0][0], pil)
    assert grey.decode_device("cuda").type == "cpu"
    assert grey.decoder_name("cuda") == "PIL"


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_are_the_items_decoded_one_by_one(tmp_path: Path, workers: int) -> None:
    paths = _tree(tmp_path, 37, 53)
    dataset = _dataset(paths, 37, 53)
    data = EvalData("tree-c", dataset.labels, 7, "tree", dataset=dataset)
    expected = torch.stack([dataset[i][0] for i in range(len(dataset))]).float() / 255
    batches = list(data.batches(8, "cpu", num_workers=workers))
    assert [len(x) for x, _ in batches] == [8, 8, 8, 7]
    assert torch.equal(torch.cat([x for x, _ in batches]), expected)
    assert torch.cat([y for _, y in batches]).tolist() == dataset.labels.tolist()
    # a subset (of a subset) keeps its order and decodes the same items
    order = np.array([30, 2, 17, 5, 29])
    chosen = data.subset(np.arange(len(data))[::-1]).subset(len(data) - 1 - order)
    assert isinstance(chosen.dataset, Subset)
    assert torch.equal(torch.cat([x for x, _ in chosen.batches(2)]), expected[order])
    assert decoder_name(chosen, "cpu") == "torchvision.io.decode_jpeg (cpu)"


def test_cuda_batches_are_one_decode_jpeg_call_on_the_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plumbing of `gpu_decode`, without a GPU: where a batch is decoded, in how many calls
    of `decode_jpeg`, and what the provenance calls the decoder."""
    paths = _tree(tmp_path, 64, 64)[:9]  # JPEGs only
    spy = _Spy()
    monkeypatch.setattr(released, "decode_jpeg", spy)
    off, on = _dataset(paths, 64, 64), _dataset(paths, 64, 64, gpu_decode=True)
    assert off.decode_device("cuda").type == "cpu" and on.decode_device("cpu").type == "cpu"
    assert on.decode_device("cuda:1") == torch.device("cuda:1")
    data = EvalData("tree-c", on.labels, 7, "tree", dataset=on)
    assert decoder_name(data, "cuda") == "torchvision.io.decode_jpeg (cuda)"
    assert decoder_name(data, "cpu") == "torchvision.io.decode_jpeg (cpu)"
    assert decoder_name(EvalData("tree-c", off.labels, 7, "tree", dataset=off),
                        "cuda") == "torchvision.io.decode_jpeg (cpu)"
    encoded = [on.encoded(i)[0] for i in range(len(on))]
    images = on.decode_batch(encoded, list(range(len(on))), "cuda")
    assert spy.calls == [(9, "cuda")]
    expected = torch.stack([_pil_pixels(p) for p in paths])
    assert torch.equal(images, expected)
    # the loader leaves batches for CUDA encoded: they are decoded after it, a call per batch
    spy.calls.clear()
    monkeypatch.setattr(on, "decode_device", lambda device: torch.device("cuda"))
    batches = list(data.batches(4, "cpu", num_workers=1))
    assert spy.calls == [(4, "cuda"), (4, "cuda"), (1, "cuda")]
    assert torch.equal(torch.cat([x for x, _ in batches]), expected.float() / 255)


def test_other_data_name_their_decoder(tmp_path: Path) -> None:
    path = _write(tmp_path / "n01440764", "a.JPEG", _photo("coffee", 300, 400), format="JPEG")
    files = ImageFiles([str(path)], [0], IMAGENET_EVAL.transform())
    assert decoder_name(EvalData("imagenet", np.zeros(1, np.int64), 1, str(tmp_path),
                                 dataset=files, preprocessing=IMAGENET_EVAL), "cuda") == "PIL"
    in_memory = EvalData("cifar10", np.zeros(2, np.int64), 10, "x",
                         images=torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    assert decoder_name(in_memory, "cuda") is None


@pytest.mark.parametrize("damage", ["truncated", "not an image", "empty", "missing"])
def test_a_broken_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                damage: str) -> None:
    paths = _tree(tmp_path, 64, 64)[:6]
    broken = paths[3]
    if damage == "truncated":
        truncate(broken, broken.stat().st_size // 2)
    elif damage == "not an image":
        broken.write_text("<html>404</html>")
    elif damage == "empty":
        broken.write_bytes(b"")
    else:
        broken.unlink()
    dataset = _dataset(paths, 64, 64, gpu_decode=True)
    message = re.escape(f"{broken}: unreadable image")
    with pytest.raises(CorruptedSetError, match=message):
        dataset[3]
    with pytest.raises(CorruptedSetError, match=message):
        list(EvalData("tree-c", dataset.labels, 7, "tree", dataset=dataset).batches(4))
    if damage != "missing":  # a failed CUDA batch is decoded again image by image
        spy = _Spy()
        monkeypatch.setattr(released, "decode_jpeg", spy)
        encoded = [dataset.encoded(i)[0] for i in range(len(dataset))]
        with pytest.raises(CorruptedSetError, match=message):
            dataset.decode_batch(encoded, list(range(len(dataset))), "cuda")
        # a truncated JPEG fails the batched call, then the 4th single one; others go to PIL
        retries = [(1, "cuda")] * 4 if damage == "truncated" else []
        assert spy.calls == [(6 if damage == "truncated" else 5, "cuda"), *retries]


def test_a_wrong_size_is_named(tmp_path: Path) -> None:
    paths = _tree(tmp_path, 64, 64)[:2]
    dataset = _dataset(paths, 32, 32)
    message = re.escape(f"{paths[0]}: image is 64x64, expected 32x32")
    with pytest.raises(CorruptedSetError, match=message):
        list(EvalData("tree-c", dataset.labels, 7, "tree", dataset=dataset).batches(2))
