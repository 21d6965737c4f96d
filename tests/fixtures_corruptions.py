"""Tiny corrupted sets written in the released on-disk formats (CIFAR-C `.npy`, JPEG trees).

Content: severity s of corruption c is the clean image plus seeded noise of amplitude
`noise_level(s)` grey levels (seed from (c, s)), so errors grow with severity and every
(corruption, severity) differs, while labels stay those of the clean images.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from types import ModuleType

import numpy as np
from fixtures import class_level
from PIL import Image

from corruptions.catalog import ALL, SEVERITIES


def noise_level(severity: int) -> float:
    """Uniform noise amplitude (grey levels) of fixture severity `severity`."""
    return 25.0 * severity


def corrupt_like_fixture(images: np.ndarray, corruption: str, severity: int) -> np.ndarray:
    """The fixture's stand-in corruption of uint8 (N, H, W, C) images."""
    rng = np.random.default_rng([ALL.index(corruption), severity])
    amplitude = noise_level(severity)
    noise = rng.uniform(-amplitude, amplitude, images.shape)
    return np.clip(images.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def write_npy_c(directory: Path, name: str, images: np.ndarray, labels: np.ndarray,
                corruptions: tuple[str, ...] = ALL) -> Path:
    """Write `<name>/<corruption>.npy` (uint8 (5 N, H, W, C)) and `labels.npy`; return the folder.

    `images` are the clean test images in test-set order, uint8 (N, H, W, C)."""
    root = Path(directory) / name
    root.mkdir(parents=True, exist_ok=True)
    for corruption in corruptions:
        rows = np.concatenate([corrupt_like_fixture(images, corruption, s) for s in SEVERITIES])
        np.save(root / f"{corruption}.npy", rows)
    np.save(root / "labels.npy", np.tile(np.asarray(labels, dtype=np.int64), len(SEVERITIES)))
    return root


def cifar_test_images(cifar_root: Path, batch: str = "test_batch") -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """uint8 (N, 32, 32, 3) images and labels of a fixture CIFAR test batch (trusted pickle)."""
    import pickle

    with (Path(cifar_root) / batch).open("rb") as file:
        raw = pickle.load(file, encoding="bytes")
    labels = raw.get(b"labels", raw.get(b"fine_labels"))
    return raw[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), np.array(labels)


def truncate(path: Path, keep: int) -> Path:
    """Cut `path` to its first `keep` bytes (an interrupted download)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return path


def write_tree_c(directory: Path, name: str, wnids: list[str], n_per_class: int = 2,
                 size: int = 64, corruptions: tuple[str, ...] = ALL,
                 severities: tuple[int, ...] = SEVERITIES, seed: int = 0,
                 defect_wnids: tuple[str, ...] = ()) -> Path:
    """Write `<name>/<corruption>/<severity>/<wnid>/*.JPEG` (size x size RGB); return the folder.

    Images of the j-th wnid have mean grey level about `class_level(j, len(wnids))` plus severity
    noise. `defect_wnids` adds extra class folders to `frost` only (the 1000-folder defect of one
    Tiny-ImageNet-C release); their images are black.
    """
    root = Path(directory) / name
    rng = np.random.default_rng(seed)
    for corruption in corruptions:
        for severity in severities:
            for position, wnid in enumerate(wnids):
                folder = root / corruption / str(severity) / wnid
                folder.mkdir(parents=True, exist_ok=True)
                for k in range(n_per_class):
                    level = class_level(position, len(wnids))
                    amplitude = noise_level(severity) / 5
                    pixels = level + rng.uniform(-amplitude, amplitude, (size, size, 3))
                    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                        folder / f"{wnid}_{k}.JPEG", format="JPEG", quality=95)
            if corruption == "frost":
                for wnid in defect_wnids:
                    folder = root / corruption / str(severity) / wnid
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", (size, size)).save(folder / f"{wnid}_0.JPEG")
    return root


def load_imagecorruptions(patch) -> ModuleType:
    """`imagecorruptions.corruptions` (1.1.2, test-only oracle) working on this stack.

    Its PyPI release breaks here; `patch` (a `pytest.MonkeyPatch`) applies, reversibly:
    a `pkg_resources.resource_filename` stand-in (setuptools >= 81 has no pkg_resources),
    `np.float_` (removed in NumPy 2, used by fog), and `gaussian(multichannel=True)` ->
    `channel_axis=-1` (scikit-image >= 0.19 dropped `multichannel`).
    """
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, name: str) -> str:
            return str(Path(importlib.util.find_spec(package).origin).parent / name)

        shim.resource_filename = resource_filename
        patch.setitem(sys.modules, "pkg_resources", shim)
    if not hasattr(np, "float_"):
        patch.setattr(np, "float_", np.float64, raising=False)
    module = importlib.import_module("imagecorruptions.corruptions")
    original = module.gaussian

    def gaussian(image, sigma=1, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return original(image, sigma=sigma, **kwargs)

    patch.setattr(module, "gaussian", gaussian)
    return module
