"""OOD image sets as [0, 1] images at the model's input size: image folders (the ODIN layout),
OpenOOD image lists, SVHN `.mat` files, arrays handed in by a caller (e.g. CIFAR-10 vs CIFAR-100),
ODIN's uniform and gaussian noise, and crops of the photographs shipped with scikit-image and
scikit-learn (the embedded default for small grey inputs such as the 8x8 digits).

Every loader takes the model's input as `channels` and `size` (H, W) and a `resize` mode:

- ``none`` (default, as ODIN: its sets are already 32x32): an image of another size is an error;
- ``resize``: bilinear with antialiasing to exactly (H, W), aspect ratio not kept;
- ``center_crop``: the central (H, W) window; an image smaller than that is an error;
- ``resize_center_crop``: shorter side resized to max(H, W), then the central (H, W) window;
- ``imagenet``: shorter side resized to round(max(H, W) * 256 / 224), then the central window
  (Resize(256) -> CenterCrop(224) at 224x224, the ImageNet eval transform);
- a `ResizeCrop`: an explicit resize (side, interpolation, squash) then the central window,
  e.g. a timm checkpoint's own evaluation preprocessing, so OOD images are read as its ID
  images are.

Files are resized by PIL (through torchvision), arrays by torchvision's tensor kernels. Channels
are converted as PIL does: RGB -> grey with ITU-R 601-2 luma (`convert("L")`), grey -> RGB by
repetition. Generated images are drawn per index from ``np.random.default_rng([seed, kind,
stream, index])``, so image i is the same whatever the batch size, order or count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.io import loadmat  # reads MATLAB v4 / v5 data only, never code
from scipy.io.matlab import MatReadError
from torch.utils.data import Dataset, Subset
from torchvision.transforms.v2 import functional as tvf

__all__ = [
    "IMAGE_SUFFIXES",
    "NATURAL_SOURCES",
    "RESIZE_MODES",
    "OODSet",
    "fit_to_input",
    "from_array",
    "gaussian",
    "image_folder",
    "image_list",
    "natural_crops",
    "svhn_mat",
    "to_channels",
    "uniform",
]

RESIZE_MODES = ("none", "resize", "center_crop", "resize_center_crop", "imagenet")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp"})
# Natural photographs and textures shipped inside scikit-image 0.26 (`skimage.data.<name>()`) and
# scikit-learn (`load_sample_images`). Text, line art, binary masks and synthetic patterns are
# left out on purpose: they are closer to digits than to "natural images".
NATURAL_SOURCES = ("astronaut", "camera", "chelsea", "coffee", "rocket", "brick", "grass",
                   "gravel", "moon", "coins", "clock", "hubble_deep_field",
                   "immunohistochemistry", "sklearn:china", "sklearn:flower")
_KIND = {"uniform": 1, "gaussian": 2, "natural_crops": 3}
Size = tuple[int, int]


@dataclass(frozen=True)
class OODSet:
    """An unlabelled OOD set at the model's input size: exactly one of `images` and `dataset`.

    `images`: an (N, C, H, W) tensor, uint8 in [0, 255] or float in [0, 1]. `dataset`: a lazy
    map-style dataset whose items are `(image, -1)` with `image` a uint8 (C, H, W) tensor.
    """

    name: str
    source: str
    images: torch.Tensor | None = None
    dataset: Dataset | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.images is None) == (self.dataset is None):
            raise ValueError("OODSet needs exactly one of `images` and `dataset`")

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.dataset)

    def subset(self, indices: Sequence[int] | np.ndarray) -> OODSet:
        """The items at `indices`, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.images is not None:
            return replace(self, images=self.images[torch.from_numpy(indices)])
        return replace(self, dataset=Subset(self.dataset, indices.tolist()))


@dataclass(frozen=True)
class ResizeCrop:
    """Resize the shorter side (both sides with `squash`) to `side` pixels with `interpolation`
    (a torchvision `InterpolationMode` value, e.g. 'bicubic'), then take the central window."""

    side: int
    interpolation: str = "bilinear"
    squash: bool = False


def _check_input(channels: int, size: Size, resize: str | ResizeCrop) -> None:
    """Reject a channel count, size or resize mode the loaders cannot honour."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with H, W >= 1, got {size}")
    if not isinstance(resize, ResizeCrop) and resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")


def fit_to_input(image: Image.Image | torch.Tensor, size: Size, resize: str | ResizeCrop,
                 where: str) -> Image.Image | torch.Tensor:
    """`image` (PIL, or a (..., C, H, W) tensor) brought to `size` by the `resize` mode."""
    height, width = tvf.get_size(image)
    target = (int(size[0]), int(size[1]))
    if isinstance(resize, ResizeCrop):
        side = [resize.side, resize.side] if resize.squash else [resize.side]
        image = tvf.resize(image, side, interpolation=tvf.InterpolationMode(
            resize.interpolation), antialias=True)
        height, width = tvf.get_size(image)
    elif resize in ("resize_center_crop", "imagenet"):
        side = max(target)
        side = round(side * 256 / 224) if resize == "imagenet" else side
        image = tvf.resize(image, [side], interpolation=tvf.InterpolationMode.BILINEAR,
                           antialias=True)
        height, width = tvf.get_size(image)
    elif resize == "resize":
        return tvf.resize(image, list(target), interpolation=tvf.InterpolationMode.BILINEAR,
                          antialias=True)
    if (height, width) == target:
        return image
    if resize == "none":
        raise ValueError(f"{where}: image is {height}x{width} but the model takes {target[0]}x"
                         f"{target[1]}; choose a resize mode ({', '.join(RESIZE_MODES[1:])})")
    if height < target[0] or width < target[1]:
        raise ValueError(f"{where}: image is {height}x{width}, smaller than the {target[0]}x"
                         f"{target[1]} crop of resize mode {resize!r}")
    return tvf.center_crop(image, list(target))


def to_channels(images: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    """uint8 (N, C, H, W) images converted to `channels` as PIL converts (luma / repetition)."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        if images.dtype != torch.uint8:
            raise ValueError(f"{where}: grey conversion expects uint8 images, got {images.dtype}")
        # PIL's fixed-point ITU-R 601-2 luma: (19595 R + 38470 G + 7471 B + 2^15) >> 16
        rgb = images.to(torch.int64)
        luma = (19595 * rgb[:, 0] + 38470 * rgb[:, 1] + 7471 * rgb[:, 2] + 32768) >> 16
        return luma.to(torch.uint8).unsqueeze(1)
    raise ValueError(f"{where}: cannot convert {have}-channel images to {channels} channels")


def from_array(name: str, images: torch.Tensor | np.ndarray, source: str, channels: int,
               size: Size, resize: str | ResizeCrop = "none") -> OODSet:
    """An OOD set from uint8 (N, C, H, W) images in memory (e.g. the other CIFAR's test set)."""
    _check_input(channels, size, resize)
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.dtype != torch.uint8 or len(images) == 0:
        raise ValueError(f"{source}: expected non-empty uint8 (N, C, H, W) images, got "
                         f"{images.dtype} {tuple(images.shape)}")
    images = fit_to_input(to_channels(images, channels, source), size, resize, source)
    return OODSet(name=name, source=source, images=images.contiguous())


def svhn_mat(path: Path | str, channels: int, size: Size, resize: str | ResizeCrop = "none",
             name: str = "svhn") -> OODSet:
    """SVHN in the cropped-digits format (`test_32x32.mat`: 'X' uint8 (32, 32, 3, N))."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: SVHN file not found (expected test_32x32.mat from "
                         "http://ufldl.stanford.edu/housenumbers/)")
    try:
        content = loadmat(path, variable_names=["X"])
    except (MatReadError, ValueError, OSError, NotImplementedError) as exc:
        raise ValueError(f"{path}: not a readable SVHN .mat file ({exc})") from exc
    x = content.get("X")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[2] != 3 or x.dtype != np.uint8:
        found = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else "no 'X'"
        raise ValueError(f"{path}: expected 'X' as uint8 (H, W, 3, N), found {found}")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)))
    return from_array(name, images, str(path), channels, size, resize)


class _ImageFiles(Dataset):
    """Image files decoded lazily, converted to `channels`, fitted to `size`; label -1."""

    def __init__(self, paths: list[Path], channels: int, size: Size, resize: str | ResizeCrop
                 ) -> None:
        self.paths = paths
        self.mode = "L" if channels == 1 else "RGB"
        self.size = size
        self.resize = resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert(self.mode)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{path}: unreadable image ({exc})") from exc
        image = fit_to_input(image, self.size, self.resize, str(path))
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
        pixels = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
        return pixels.contiguous(), -1


def _files_set(name: str, source: str, paths: list[Path], channels: int, size: Size,
               resize: str | ResizeCrop) -> OODSet:
    """A lazy set over image files, checked on its first image."""
    dataset = _ImageFiles(paths, channels, size, resize)
    _ = dataset[0]  # fail now, not inside a data loader worker, when the first image does not fit
    return OODSet(name=name, source=source, dataset=dataset)


def _is_image(path: Path) -> bool:
    """A visible file name with an image suffix, any case."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def image_folder(path: Path | str, channels: int, size: Size,
                 resize: str | ResizeCrop = "none",
                 name: str | None = None) -> OODSet:
    """Every image file below `path` (any depth), in sorted relative-path order.

    The ODIN sets extract to such folders (e.g. `Imagenet/test/*.jpg`, `LSUN_resize/...`,
    `iSUN/iSUN_patches/*.jpeg`); hidden files and folders are skipped.
    """
    _check_input(channels, size, resize)
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: OOD image folder not found")
    paths = sorted((p for p in root.rglob("*") if p.is_file() and _is_image(p)
                    and not any(part.startswith(".") for part in p.relative_to(root).parts)),
                   key=lambda p: p.relative_to(root).as_posix())
    if not paths:
        raise ValueError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) below it")
    return _files_set(name or root.name, str(root), paths, channels, size, resize)


def image_list(list_file: Path | str, root: Path | str, channels: int, size: Size,
               resize: str | ResizeCrop = "none", name: str | None = None) -> OODSet:
    """An OpenOOD image list: lines `relative/path label`, paths relative to `root`.

    OpenOOD's lists live in `benchmark_imglist/<id>/test_<ood>.txt` with paths relative to its
    `images_classic/` (or `images_largescale/`) folder; OOD lines carry label -1. Labels are
    checked to be integers and otherwise ignored: every listed image is OOD here.
    """
    _check_input(channels, size, resize)
    list_file, root = Path(list_file), Path(root)
    if not list_file.is_file():
        raise ValueError(f"{list_file}: image list not found")
    paths = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(maxsplit=1)
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise ValueError(f"{list_file}, line {number}: expected 'relative/path label', "
                             f"found {line!r}")
        image = root / fields[0]
        if not image.is_file():
            raise ValueError(f"{list_file}, line {number}: {image} not found (paths are "
                             f"relative to the image root {root})")
        paths.append(image)
    if not paths:
        raise ValueError(f"{list_file}: lists no images")
    return _files_set(name or list_file.stem, str(list_file), paths, channels, size, resize)


def _rng(seed: int, kind: str, stream: int, index: int) -> np.random.Generator:
    """The generator of image `index`: independent of batch size, order and count."""
    return np.random.default_rng([seed, _KIND[kind], stream, index])


def _draw_uniform(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """U[0, 1] per pixel and channel."""
    return rng.random(shape)


def _draw_gaussian(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """N(0.5, 1) per pixel and channel, clipped to [0, 1]."""
    return np.clip(rng.normal(0.5, 1.0, shape), 0.0, 1.0)


@cache
def _natural_sources() -> tuple[np.ndarray, ...]:
    """The NATURAL_SOURCES photographs as uint8 RGB (H, W, 3) arrays (grey ones repeated)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    samples = dict(zip(("china", "flower"), load_sample_images().images, strict=True))
    arrays = []
    for name in NATURAL_SOURCES:
        pixels = samples[name[8:]] if name.startswith("sklearn:") else getattr(skimage.data,
                                                                              name)()
        pixels = np.asarray(pixels, dtype=np.uint8)
        arrays.append(np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels)
    return tuple(arrays)


@dataclass(frozen=True)
class _DrawCrop:
    """Draws one natural crop (see `natural_crops`); a plain object, so workers can pickle it."""

    levels: int

    def __call__(self, rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
        sources = _natural_sources()
        channels, height, width = shape
        photo = sources[int(rng.integers(len(sources)))]
        rows, cols = photo.shape[:2]
        top_height = min(rows, cols * height / width) / 2
        crop_h = rng.uniform(min(max(height, min(rows, cols) / 16), top_height), top_height)
        h, w = max(1, round(crop_h)), max(1, round(crop_h * width / height))
        y, x = int(rng.integers(rows - h + 1)), int(rng.integers(cols - w + 1))
        image = Image.fromarray(photo[y:y + h, x:x + w]).convert("L" if channels == 1 else "RGB")
        pixels = np.asarray(image.resize((width, height), Image.Resampling.BOX), np.float64)
        pixels = pixels.reshape(height, width, -1).transpose(2, 0, 1) / 255.0
        return np.round(pixels * (self.levels - 1)) / (self.levels - 1)


Draw = Callable[[np.random.Generator, tuple[int, int, int]], np.ndarray]


class _Generated(Dataset):
    """Generated images made on demand, item i from its own generator; label -1."""

    def __init__(self, kind: str, n: int, shape: tuple[int, int, int], seed: int, stream: int,
                 draw: Draw) -> None:
        self.kind, self.n, self.shape = kind, n, shape
        self.seed, self.stream, self.draw = seed, stream, draw

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.draw(_rng(self.seed, self.kind, self.stream, index), self.shape)
        return torch.from_numpy(image.astype(np.float32)), -1


def _generate(kind: str, n: int, channels: int, size: Size, seed: int, stream: int, draw: Draw,
              lazy: bool, source: str) -> OODSet:
    """n float32 images, image i drawn by `draw` from its own generator (seed, kind, stream, i);
    made now into a tensor, or on demand by a dataset when `lazy`."""
    _check_input(channels, size, "none")
    if n < 1:
        raise ValueError(f"{kind}: the number of images must be >= 1, got {n}")
    made = _Generated(kind, n, (channels, int(size[0]), int(size[1])), seed, stream, draw)
    if lazy:
        return OODSet(name=kind, source=source, dataset=made)
    images = torch.empty((n, *made.shape), dtype=torch.float32)
    for index in range(n):
        images[index] = made[index][0]
    return OODSet(name=kind, source=source, images=images)


def uniform(n: int, channels: int, size: Size, seed: int, stream: int = 0,
            lazy: bool = False) -> OODSet:
    """ODIN's Uniform set: every pixel and channel i.i.d. U[0, 1]."""
    return _generate("uniform", n, channels, size, seed, stream, _draw_uniform, lazy,
                     f"uniform U[0, 1] (seed {seed}, stream {stream})")


def gaussian(n: int, channels: int, size: Size, seed: int, stream: int = 0,
             lazy: bool = False) -> OODSet:
    """ODIN's Gaussian set: every pixel and channel i.i.d. N(0.5, 1), clipped to [0, 1]."""
    return _generate("gaussian", n, channels, size, seed, stream, _draw_gaussian, lazy,
                     f"gaussian N(0.5, 1) clipped (seed {seed}, stream {stream})")


def natural_crops(n: int, channels: int, size: Size, seed: int, stream: int = 0,
                  levels: int = 256, lazy: bool = False) -> OODSet:
    """Random crops of natural photographs and textures, area-averaged down to `size`.

    Image i: a source photograph drawn uniformly from NATURAL_SOURCES, a crop of aspect H:W whose
    height is uniform in [max(H, s / 16), s / 2] pixels (s = the photograph's shorter side) at a
    uniform position, resized by PIL's BOX filter (area averaging), converted to `channels` as PIL
    does, then quantized to `levels` grey levels (17 = the 8x8 digits' 0..16 scale).
    """
    if levels < 2:
        raise ValueError(f"natural_crops: levels must be >= 2, got {levels}")
    return _generate("natural_crops", n, channels, size, seed, stream, _DrawCrop(levels), lazy,
                     f"natural_crops of {len(NATURAL_SOURCES)} scikit-image / scikit-learn "
                     f"photos (seed {seed}, stream {stream}, {levels} levels)")
