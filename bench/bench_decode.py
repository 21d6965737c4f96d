"""Benchmark: decoding a JPEG tree with batched `decode_jpeg` vs PIL image by image.

1. A `<corruption>/<severity>/<wnid>/*.JPEG` tree (default 512 images of 224x224, quality 85 as
   ImageNet-C was saved; crops of scikit-image's sample photographs, not noise) read as the
   `corruptions` task reads it: `EvalData.batches` over `ImageFileDataset` (file bytes, then
   torchvision's `decode_jpeg` a batch at a time, on the CPU) vs the former reader (PIL image by
   image, in a DataLoader with the same batch size). Also the decoders alone, bytes in memory.
   Both give the same tensors (checked); prints images per second of each and the ratio.
2. ImageNet val's path, where the resize must stay PIL's: PIL decode + Resize(256) ->
   CenterCrop(224) vs `decode_jpeg` + the same PIL transform, on 500x375 images.
Timings are medians over repetitions, the two sides interleaved in one process; the ratio is
the median of the repetitions' ratios (robust to a machine whose load drifts).

    python bench/bench_decode.py [--n 512] [--batch-size 128] [--reps 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from benchmark.data import EvalData, decoder_name
from benchmark.readers import IMAGENET_EVAL
from corruptions.released import ImageFileDataset

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
          "hubble_deep_field", "camera")
QUALITY = 85  # ImageNet-C's
CLASSES = 8


def photos(n: int, height: int, width: int, seed: int = 0) -> list[Image.Image]:
    """`n` RGB images of `height` x `width`: random crops (40-100% of the shorter side) of the
    sample photographs, resized, half of them mirrored."""
    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in PHOTOS]
    images = []
    for _ in range(n):
        source = sources[rng.integers(len(sources))]
        side = int(min(source.size) * rng.uniform(0.4, 1.0))
        left = rng.integers(source.width - side + 1)
        top = rng.integers(source.height - side + 1)
        image = source.crop((left, top, left + side, top + side)).resize(
            (width, height), Image.Resampling.BILINEAR)
        images.append(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5
                      else image)
    return images


def write_tree(root: Path, images: list[Image.Image]) -> tuple[list[str], np.ndarray]:
    """`root/fog/3/<wnid>/*.JPEG`, the images dealt over `CLASSES` folders; paths and labels."""
    paths, labels = [], []
    for index, image in enumerate(images):
        label = index % CLASSES
        folder = root / "fog" / "3" / f"n{label:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index:06d}.JPEG"
        image.save(path, format="JPEG", quality=QUALITY)
        paths.append(str(path))
        labels.append(label)
    return paths, np.array(labels, dtype=np.int64)


class PILImages(Dataset):
    """The former `ImageFileDataset`: PIL decodes each image as the DataLoader asks for it."""

    def __init__(self, paths: list[str], labels: np.ndarray) -> None:
        self.paths = paths
        self.labels = labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            pixels = np.asarray(image.convert("RGB"))
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))), \
            int(self.labels[index])


def pil_batches(dataset: PILImages, batch_size: int) -> Iterator[torch.Tensor]:
    """[0, 1] batches, PIL decoding image by image in a DataLoader (the former reader)."""
    for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        yield images.float().div_(255)


def decode_jpeg_batches(data: EvalData, batch_size: int) -> Iterator[torch.Tensor]:
    """[0, 1] batches as the `corruptions` task reads them (batched `decode_jpeg`)."""
    for images, _ in data.batches(batch_size, "cpu"):
        yield images


def drain(batches: Iterator[torch.Tensor]) -> None:
    """Consume `batches` as a forward pass would, one at a time."""
    for _ in batches:
        pass


def pil_decode(blobs: list[bytes]) -> list[np.ndarray]:
    """The decoder alone: PIL, image by image, from bytes in memory."""
    out = []
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as image:
            out.append(np.asarray(image.convert("RGB")))
    return out


def torchvision_decode(tensors: list[torch.Tensor], batch_size: int) -> list[torch.Tensor]:
    """The decoder alone: `decode_jpeg` on lists of `batch_size` byte tensors."""
    out = []
    for start in range(0, len(tensors), batch_size):
        out.extend(decode_jpeg(tensors[start:start + batch_size], mode=ImageReadMode.RGB))
    return out


def compare(title: str, n: int, baseline: tuple[str, Callable[[], object]],
            new: tuple[str, Callable[[], object]], reps: int) -> None:
    """Print the median images/s of both sides over `reps` rounds (after a warm-up), the order
    alternating, and the median over rounds of the speed ratio new / baseline."""
    sides = dict([baseline, new])
    for run in sides.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for rep in range(reps):
        for name in sides if rep % 2 == 0 else list(sides)[::-1]:
            start = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - start)
    print(title)
    for name, values in times.items():
        print(f"  {name:<40} {n / statistics.median(values):7.0f} images/s")
    ratios = [old / fresh for old, fresh in zip(times[baseline[0]], times[new[0]], strict=True)]
    print(f"  ratio ({new[0]} / {baseline[0]}): {statistics.median(ratios):.2f}x "
          f"(rounds {min(ratios):.2f}-{max(ratios):.2f})")


def bench_tree(n: int, batch_size: int, reps: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        paths, labels = write_tree(Path(folder), photos(n, 224, 224))
        dataset = ImageFileDataset(paths, labels, (3, 224, 224))
        data = EvalData("tree-c", labels, CLASSES, folder, dataset=dataset)
        old = PILImages(paths, labels)
        same = all(torch.equal(a, b) for a, b in zip(
            pil_batches(old, batch_size), decode_jpeg_batches(data, batch_size), strict=True))
        size = sum(Path(p).stat().st_size for p in paths) / n / 1024
        print(f"{n} JPEGs of 224x224, quality {QUALITY}, {size:.1f} KiB each; batch "
              f"{batch_size}; decoder: {decoder_name(data, 'cpu')}; same tensors as PIL: "
              f"{'yes' if same else 'NO'}")
        compare("files -> [0, 1] batches", n,
                ("PIL image by image", lambda: drain(pil_batches(old, batch_size))),
                ("decode_jpeg batched", lambda: drain(decode_jpeg_batches(data, batch_size))),
                reps)
        blobs = [Path(p).read_bytes() for p in paths]
        tensors = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
        compare("decoders alone, bytes in memory -> uint8 images", n,
                ("PIL", lambda: pil_decode(blobs)),
                ("decode_jpeg", lambda: torchvision_decode(tensors, batch_size)), reps)


def bench_imagenet_val(n: int, reps: int) -> None:
    transform = IMAGENET_EVAL.transform()
    blobs = []
    for image in photos(n, 375, 500, seed=1):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        blobs.append(buffer.getvalue())
    tensors = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]

    def pil() -> list[torch.Tensor]:
        out = []
        for blob in blobs:
            with Image.open(io.BytesIO(blob)) as image:
                out.append(transform(image.convert("RGB")))
        return out

    def torchvision_then_pil() -> list[torch.Tensor]:
        return [transform(Image.fromarray(image.permute(1, 2, 0).numpy()))
                for image in decode_jpeg(tensors, mode=ImageReadMode.RGB)]

    same = all(torch.equal(a, b) for a, b in zip(pil(), torchvision_then_pil(), strict=True))
    print(f"\n{n} JPEGs of 500x375 -> {IMAGENET_EVAL.describe()} (ImageNet val); same tensors: "
          f"{'yes' if same else 'NO'}")
    compare("bytes in memory -> [0, 1] crops", n, ("PIL decode + PIL resize", pil),
            ("decode_jpeg + PIL resize", torchvision_then_pil), reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="images in the JPEG tree")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--imagenet-n", type=int, default=128, help="500x375 images; 0 skips")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, one process")
    bench_tree(args.n, args.batch_size, args.reps)
    if args.imagenet_n:
        bench_imagenet_val(args.imagenet_n, args.reps)


if __name__ == "__main__":
    main()
