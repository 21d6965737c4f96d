"""The embedded demo zoo: small CNNs trained on digits with the seed papers' regularizers.

Training is deterministic on one machine (seeded shuffles, seeded mixing, one thread), and a
checkpoint is reused when the file and its recipe are unchanged, so `rubench demo` trains once.
Another CPU's float kernels give slightly different weights (relative L2 distance 0.01-0.13
when torch is forced onto its generic kernels, against 0.85 for another seed), so the CI gate
evaluates the zoo committed in `.ci/zoo` rather than one trained afresh.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from benchmark.archs import build_arch
from benchmark.checkpoints import sha256_file
from benchmark.datasets import read_digits
from reports.files import write_atomic, write_text_atomic

ZOO_VERSION = 2  # bump when the training code changes the weights it produces
ARCH = "digits_cnn"
REGULARIZERS = ("erm", "mixup", "cutmix", "cutout", "label_smoothing")


@dataclass(frozen=True)
class Recipe:
    """How one zoo member is trained: the regularizer and its hyper-parameter, plus the schedule."""

    name: str
    regularizer: str  # erm | mixup | cutmix | cutout | label_smoothing
    strength: float = 0.0  # mixup/cutmix alpha, cutout hole side (pixels), smoothing epsilon
    prob: float = 1.0  # share of batches the regularizer is applied to (CutMix's cutmix_prob)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {self.regularizer!r}; "
                             f"choose one of {', '.join(REGULARIZERS)}")


# Hyper-parameters follow each paper's CIFAR recipe, scaled to 8x8 images where they are sizes:
# Mixup alpha 1 (Zhang et al.), CutMix beta 1 with probability 0.5 (Yun et al.), Cutout with a
# hole of half the image side (DeVries & Taylor: 16 px on 32x32), label smoothing 0.1.
RECIPES = (
    Recipe("erm", "erm"),
    Recipe("mixup", "mixup", strength=1.0),
    Recipe("cutmix", "cutmix", strength=1.0, prob=0.5),
    Recipe("cutout", "cutout", strength=4.0),
    Recipe("label_smoothing", "label_smoothing", strength=0.1),
)


def _soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _box(height: int, width: int, area: float, rng: np.random.Generator
         ) -> tuple[int, int, int, int]:
    """A box of about `area` x the image area, centred uniformly, clipped at the border."""
    cut_h, cut_w = int(height * math.sqrt(area)), int(width * math.sqrt(area))
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    return (max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height),
            max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width))


def regularized_batch(recipe: Recipe, images: torch.Tensor, labels: torch.Tensor,
                      num_classes: int, rng: np.random.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the recipe's regularizer: (inputs, soft targets) for one training batch."""
    onehot = F.one_hot(labels, num_classes).float()
    if recipe.regularizer == "label_smoothing":
        return images, onehot * (1 - recipe.strength) + recipe.strength / num_classes
    if recipe.regularizer == "erm" or rng.random() >= recipe.prob:
        return images, onehot
    if recipe.regularizer == "cutout":
        images = images.clone()
        height, width = images.shape[-2:]
        for i in range(len(images)):
            y0, y1, x0, x1 = _box(height, width, (recipe.strength / height) ** 2, rng)
            images[i, :, y0:y1, x0:x1] = 0.0
        return images, onehot
    lam = float(rng.beta(recipe.strength, recipe.strength))
    perm = torch.from_numpy(rng.permutation(len(images)))
    if recipe.regularizer == "mixup":
        return lam * images + (1 - lam) * images[perm], lam * onehot + (1 - lam) * onehot[perm]
    if recipe.regularizer == "cutmix":
        height, width = images.shape[-2:]
        y0, y1, x0, x1 = _box(height, width, 1 - lam, rng)
        images = images.clone()
        images[:, :, y0:y1, x0:x1] = images[perm, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (height * width)  # the pasted area decides the label
        return images, lam * onehot + (1 - lam) * onehot[perm]
    raise AssertionError(f"unhandled regularizer {recipe.regularizer!r}")


def train(recipe: Recipe, progress: bool = True) -> torch.nn.Module:
    """Train one zoo member on the digits train split, deterministically, on one CPU thread.

    The network is tiny: intra-op threads buy nothing and, on a busy machine, their barrier
    waits made training 30x slower; one thread also keeps the float order fixed.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(recipe, progress)
    finally:
        torch.set_num_threads(threads)


def _train(recipe: Recipe, progress: bool) -> torch.nn.Module:
    data = read_digits(split="train")
    images, labels = data.images, torch.from_numpy(data.labels)
    mean, std = normalization()
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    net = build_arch(ARCH, num_classes=data.num_classes)
    optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                                weight_decay=recipe.weight_decay)
    steps = recipe.epochs * math.ceil(len(labels) / recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps)
    net.train()
    for _ in tqdm(range(recipe.epochs), desc=f"train {recipe.name}", leave=False,
                  disable=not progress):
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(labels), recipe.batch_size):
            batch = order[start:start + recipe.batch_size]
            inputs, targets = regularized_batch(recipe, images[batch], labels[batch],
                                                data.num_classes, rng)
            loss = _soft_ce(net((inputs - mean) / std), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


def normalization() -> tuple[float, float]:
    """Mean and std of the digits train split's pixels (in [0, 1]), the zoo's normalization."""
    images = read_digits(split="train").images
    return float(images.mean()), float(images.std())


def recipe_hash(recipe: Recipe) -> str:
    """Identity of a recipe and the code that trains it."""
    payload = {"recipe": asdict(recipe), "zoo_version": ZOO_VERSION, "arch": ARCH,
               "torch": torch.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def build_zoo(zoo_dir: Path, recipes: tuple[Recipe, ...] = RECIPES, progress: bool = True,
              log: Callable[[str], None] = print, retrain: bool = False) -> list[Path]:
    """Train (or reuse, when unchanged and not `retrain`) every recipe into `zoo_dir`, with a
    `rubench.toml`."""
    zoo_dir = Path(zoo_dir)
    zoo_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = zoo_dir / "zoo.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    mean, std = normalization()
    write_text_atomic(
        zoo_dir / "rubench.toml",
        f'# Written by `rubench demo`: metadata for every checkpoint in this folder.\n'
        f'arch = "{ARCH}"\nnum_classes = 10\ninput_size = [8, 8]\n'
        f"mean = [{mean!r}]\nstd = [{std!r}]\n")
    paths = []
    for recipe in recipes:
        path = zoo_dir / f"{recipe.name}.safetensors"
        entry = manifest.get(recipe.name, {})
        if (not retrain and path.is_file() and entry.get("recipe") == recipe_hash(recipe)
                and entry.get("sha256") == sha256_file(path)):
            log(f"zoo: reusing {path}")
        else:
            net = train(recipe, progress=progress)
            state = {k: v.contiguous() for k, v in net.state_dict().items()}
            # one metadata key: safetensors writes several in a random order, changing the sha256
            metadata = {"recipe": json.dumps(asdict(recipe), sort_keys=True)}
            write_atomic(path, lambda target, st=state, md=metadata: save_file(
                st, str(target), metadata=md))
            manifest[recipe.name] = {"recipe": recipe_hash(recipe), "sha256": sha256_file(path)}
            write_text_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))
            log(f"zoo: trained {path}")
        paths.append(path)
    return paths
